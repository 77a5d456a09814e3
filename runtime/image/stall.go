package image

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// stallWatch ends a pull whose registry stops sending: while a request is
// under way, every byte that arrives puts off the deadline by d, and when
// none has arrived for d it cancels the pull's context with a cause that
// names the registry. Between requests (local work: staging, checking
// layers) it does not run.
type stallWatch struct {
	d     time.Duration
	timer *time.Timer

	mu       sync.Mutex // guards inflight and the timer's arming
	inflight int
}

// newStallWatch returns a watch over ctx for registry and the context to
// pull with; stop releases the timer and must be called.
func newStallWatch(ctx context.Context, registry string, d time.Duration) (_ *stallWatch, _ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &stallWatch{d: d}
	w.timer = time.AfterFunc(d, func() {
		cancel(fmt.Errorf("%w: %s sent nothing for %s", ErrStalled, registry, d))
	})
	w.timer.Stop()
	return w, ctx, func() {
		w.timer.Stop()
		cancel(nil)
	}
}

func (w *stallWatch) begin() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inflight++
	w.timer.Reset(w.d)
}

// progress is called as bytes arrive.
func (w *stallWatch) progress() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inflight > 0 {
		w.timer.Reset(w.d)
	}
}

func (w *stallWatch) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inflight--; w.inflight == 0 {
		w.timer.Stop()
	}
}

// watchedBody reports a response body's bytes to its watch, and its end.
type watchedBody struct {
	io.ReadCloser
	watch *stallWatch
	once  sync.Once
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.watch.progress()
	}
	if err != nil {
		// All that was coming has come: what the reader does before it
		// closes the body (syncing a staged blob) is not the registry's.
		b.once.Do(b.watch.end)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.once.Do(b.watch.end)
	return b.ReadCloser.Close()
}

// Package spare keeps one thing made ahead of time, such as a process
// whose start is slow, for the next caller that needs one: Take hands it
// out, Replenish makes the next in the background, an idle one can be
// retired, and Close removes it.
package spare

import (
	"sync"
	"time"
)

// One holds at most one spare T. Set the fields before the first call; its
// methods may then be called concurrently.
type One[T any] struct {
	// Make makes a spare; Discard ends one that will not be taken.
	Make    func() (T, error)
	Discard func(T)
	// Idle, when positive, retires a spare no Take took for that long
	// since the last Replenish.
	Idle time.Duration
	// OnError receives Make's errors; nil drops them.
	OnError func(error)

	making   sync.WaitGroup // the spare on its way
	retiring sync.WaitGroup // a retirement under way; Add only under mu, while !closed

	mu     sync.Mutex // guards following
	ready  *T
	busy   bool // one is on its way
	closed bool
	retire *time.Timer
}

// Take hands out the spare; ok is false when there is none.
func (o *One[T]) Take() (v T, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ready == nil {
		return v, false
	}
	v, o.ready = *o.ready, nil
	return v, true
}

// Ready reports whether a spare is ready to Take.
func (o *One[T]) Ready() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ready != nil
}

// Replenish starts making a spare unless one is ready or on its way, and
// pushes the retirement of the spare back by Idle.
func (o *One[T]) Replenish() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	if o.Idle > 0 {
		if o.retire == nil {
			o.retire = time.AfterFunc(o.Idle, o.retireIdle)
		} else {
			o.retire.Reset(o.Idle)
		}
	}
	if o.ready != nil || o.busy {
		return
	}
	o.busy = true
	o.making.Add(1)
	go o.make()
}

func (o *One[T]) make() {
	defer o.making.Done()
	v, err := o.Make()
	o.mu.Lock()
	o.busy = false
	keep := err == nil && !o.closed
	if keep {
		o.ready = &v
		if o.retire != nil {
			// The timer may have fired while this one was made.
			o.retire.Reset(o.Idle)
		}
	}
	o.mu.Unlock()
	switch {
	case err != nil:
		if o.OnError != nil {
			o.OnError(err)
		}
	case !keep:
		o.Discard(v)
	}
}

func (o *One[T]) retireIdle() {
	o.mu.Lock()
	if o.closed || o.ready == nil {
		o.mu.Unlock()
		return // Close discards it
	}
	v := *o.ready
	o.ready = nil
	o.retiring.Add(1)
	o.mu.Unlock()
	defer o.retiring.Done()
	o.Discard(v)
}

// Close discards the spare, waiting for one on its way, and makes no more.
func (o *One[T]) Close() {
	o.mu.Lock()
	o.closed = true
	if o.retire != nil {
		o.retire.Stop()
	}
	o.mu.Unlock()
	o.making.Wait()
	o.retiring.Wait()
	if v, ok := o.Take(); ok {
		o.Discard(v)
	}
}

package image

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The stall watch fires only when a request under way has received
// nothing for its duration: bytes put it off, and the end of a body or of
// every request stops it.
func TestStallWatch(t *testing.T) {
	stalled := func(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrStalled) }
	t.Run("bytes put it off", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, ctx, stop := newStallWatch(context.Background(), "reg", time.Second)
			defer stop()
			w.begin()
			time.Sleep(900 * time.Millisecond)
			w.progress()
			time.Sleep(900 * time.Millisecond)
			synctest.Wait()
			if stalled(ctx) {
				t.Fatal("stalled 900ms after the last byte")
			}
			time.Sleep(200 * time.Millisecond)
			synctest.Wait()
			if !stalled(ctx) || !strings.Contains(context.Cause(ctx).Error(), "reg sent nothing for 1s") {
				t.Fatalf("1.1s after the last byte: cause %v, want a stall", context.Cause(ctx))
			}
		})
	})
	t.Run("idle between requests", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, ctx, stop := newStallWatch(context.Background(), "reg", time.Second)
			defer stop()
			time.Sleep(5 * time.Second) // before any request
			w.begin()
			w.end()
			time.Sleep(5 * time.Second) // local work after it
			synctest.Wait()
			if stalled(ctx) {
				t.Fatal("stalled with no request under way")
			}
		})
	})
	t.Run("a body read to its end", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, ctx, stop := newStallWatch(context.Background(), "reg", time.Second)
			defer stop()
			w.begin()
			body := &watchedBody{ReadCloser: io.NopCloser(strings.NewReader("blob")), watch: w}
			if _, err := io.ReadAll(body); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Second) // syncing the staged blob, before Close
			synctest.Wait()
			if stalled(ctx) {
				t.Fatal("stalled after the body's end")
			}
			body.Close()
		})
	})
}

package agent

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// Starts beyond the slots wait; a freed slot goes to the oldest restart
// before any first start, and a start whose instance is stopped while it
// waits leaves the queue without taking a slot.
func TestPacerOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(2)
		ctx := context.Background()
		r1, err := p.acquire(ctx, first)
		if err != nil {
			t.Fatal(err)
		}
		r2, _ := p.acquire(ctx, first)
		if p.busySince(time.Now()) {
			t.Error("busy with free slots used but nobody waiting")
		}

		var order []string
		got := make(chan string, 8)
		wait := func(name string, ctx context.Context, pri priority) {
			go func() {
				release, err := p.acquire(ctx, pri)
				if err != nil {
					got <- name + ": " + err.Error()
					return
				}
				got <- name
				release()
			}()
			synctest.Wait() // queued before the next
		}
		cancelled, cancel := context.WithCancel(ctx)
		wait("first-1", ctx, first)
		wait("first-gone", cancelled, first)
		wait("restart-1", ctx, restart)
		wait("first-2", ctx, first)
		wait("restart-2", ctx, restart)
		if !p.busySince(time.Now()) {
			t.Error("not busy with starts waiting")
		}
		cancel()
		synctest.Wait()
		order = append(order, <-got)
		r1()
		synctest.Wait()
		r2()
		synctest.Wait()
		for range 4 {
			order = append(order, <-got)
		}
		want := []string{"first-gone: context canceled", "restart-1", "restart-2", "first-1", "first-2"}
		for i := range want {
			if order[i] != want[i] {
				t.Fatalf("order %q, want %q", order, want)
			}
		}
		if p.running != 0 || p.queued() != 0 {
			t.Errorf("after all: %d running, %d queued", p.running, p.queued())
		}
		// Busy until the last wait is a moment old.
		mark := time.Now()
		time.Sleep(time.Second)
		if !p.busySince(mark) {
			t.Error("not busy since a moment a start waited at")
		}
		if p.busySince(time.Now()) {
			t.Error("still busy a second after the last wait")
		}
	})
}

// The spacer lets one wait through every interval, in order of arrival,
// and the first at once.
func TestSpacer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &spacer{every: 100 * time.Millisecond}
		begin := time.Now()
		got := make(chan time.Duration, 5)
		for range 5 {
			go func() {
				s.wait()
				got <- time.Since(begin)
			}()
		}
		var at []time.Duration
		for range 5 {
			at = append(at, <-got)
		}
		slices.Sort(at)
		for i, d := range at {
			if want := time.Duration(i) * 100 * time.Millisecond; d != want {
				t.Errorf("wait %d returned after %v, want %v", i, d, want)
			}
		}
		time.Sleep(time.Second)
		began := time.Now()
		s.wait()
		if d := time.Since(began); d != 0 {
			t.Errorf("a wait after a quiet second took %v, want none", d)
		}
	})
}

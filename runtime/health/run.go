package health

import (
	"context"
	"time"
)

// Clock is Run's time source, replaceable in tests.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Status is a container's health as Run reports it.
type Status struct {
	// State is Starting, Healthy or Unhealthy.
	State Verdict
	// Failures counts the consecutive counted failures (see Decide).
	Failures int
	// LastOutput is the Summary of the probe that changed the state.
	LastOutput string
}

// lateBy is how much later than asked a timer may fire, or a probe end
// after its timeout, before Run takes the node for saturated: a node with
// CPU to spare is milliseconds late.
const lateBy = time.Second

// Run checks t's health until ctx ends. Call it when the container has
// started: the start period counts from then. It reports Starting at once,
// then repeatedly waits c.Interval, probes, decides and calls onChange when
// the state changes. It skips the probe while t.Busy says the node is
// saturated, and marks a failure Busy (not counted) when t.Busy says the
// node was saturated during the wait or the probe, or when the wait or
// the probe overran by more than lateBy: a check that the node could not
// even run in time is not a failure of the container. onChange runs on Run's goroutine and must return
// quickly; it may be nil. clock is the real clock when nil.
//
// An invalid c is reported once as Unhealthy, with the validation error as
// LastOutput, and Run returns: no probe of it could ever succeed. Validate
// checks where they are declared to refuse them earlier.
func Run(ctx context.Context, c Check, t Target, clock Clock, onChange func(Status)) {
	if clock == nil {
		clock = realClock{}
	}
	if onChange == nil {
		onChange = func(Status) {}
	}
	start := clock.Now()
	onChange(Status{State: Starting})
	if err := c.Validate(); err != nil {
		onChange(Status{State: Unhealthy, LastOutput: err.Error()})
		return
	}
	c = c.withDefaults()
	state := State{Status: Starting}
	for {
		waited := clock.Now()
		select {
		case <-ctx.Done():
			return
		case <-clock.After(c.Interval):
		}
		began := clock.Now()
		if t.Busy != nil && t.Busy(began) {
			continue // the node is saturated: its probes would tell nothing, and cost it more
		}
		r := Probe(ctx, c, t)
		if ctx.Err() != nil {
			return // a probe cut short by shutdown says nothing of health
		}
		if !r.OK {
			// The timer woke this loop late, or the probe overran its
			// timeout by far: the node, not the container, was slow.
			late := began.Sub(waited)-c.Interval > lateBy || clock.Now().Sub(began)-c.Timeout > lateBy
			r.Busy = late || (t.Busy != nil && t.Busy(waited))
		}
		next, changed := Decide(c, state, r, began.Sub(start))
		state = next
		if changed {
			onChange(Status{State: next.Status, Failures: next.Failures, LastOutput: r.Summary()})
		}
	}
}

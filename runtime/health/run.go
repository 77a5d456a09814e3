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

// Run checks t's health until ctx ends. Call it when the container has
// started: the start period counts from then. It reports Starting at once,
// then repeatedly waits c.Interval, probes, decides and calls onChange when
// the state changes. onChange runs on Run's goroutine and must return
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
		select {
		case <-ctx.Done():
			return
		case <-clock.After(c.Interval):
		}
		began := clock.Now()
		r := Probe(ctx, c, t)
		if ctx.Err() != nil {
			return // a probe cut short by shutdown says nothing of health
		}
		next, changed := Decide(c, state, r, began.Sub(start))
		state = next
		if changed {
			onChange(Status{State: next.Status, Failures: next.Failures, LastOutput: r.Summary()})
		}
	}
}

package health

import "time"

// Verdict is what the checks say of a container.
type Verdict string

// Health verdicts.
const (
	Starting  Verdict = "starting"  // no verdict yet: no success, not enough counted failures
	Healthy   Verdict = "healthy"   // the last probe succeeded
	Unhealthy Verdict = "unhealthy" // Retries consecutive counted failures
)

// State is what Decide remembers between probes.
type State struct {
	// Status is Starting, Healthy or Unhealthy; "" is taken as Starting.
	Status Verdict
	// Failures counts consecutive failed probes, except those inside the
	// start period; a success resets it.
	Failures int
}

// Decide is the health state machine: given the previous state, the result
// of a probe and how long after the container's start the probe began, it
// returns the next state and whether its Status changed. It is pure; c's
// zero fields take their defaults.
//
// A success makes the container healthy and resets Failures. A failure
// inside c.StartPeriod, or one marked Busy (the node, not the container,
// was too slow), changes nothing. Any other failure counts, and the
// c.Retries-th consecutive one makes the container unhealthy.
func Decide(c Check, prev State, r Result, sinceStart time.Duration) (next State, changed bool) {
	c = c.withDefaults()
	if prev.Status == "" {
		prev.Status = Starting
	}
	next = prev
	switch {
	case r.OK:
		next = State{Status: Healthy}
	case sinceStart < c.StartPeriod:
		// The application may still be coming up: don't count it.
	case r.Busy:
		// The node could not give the probe its time: it says nothing
		// of the container.
	default:
		next.Failures++
		if next.Failures >= c.Retries {
			next.Status = Unhealthy
		}
	}
	return next, next.Status != prev.Status
}

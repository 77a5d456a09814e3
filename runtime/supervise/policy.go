// Package supervise owns keeping one container running: the restart policy
// (a pure decision: restart or not, after what delay) and the loop that
// starts a container, waits for it, reports every change and restarts it
// with exponential backoff until its context is cancelled or the policy says
// stop.
//
// The loop knows two endings, as Nomad's task runner does: ctx ending kills
// (the instance is no longer wanted: stop and delete it), Config.Detach
// closing leaves (the daemon shuts down: the container keeps running, and
// the next daemon hands it back through Config.Adopt).
package supervise

import (
	"fmt"
	"time"
)

// Restart says when a container is started again.
type Restart string

// Restart policies.
const (
	Always    Restart = "always"     // restart whatever the exit
	OnFailure Restart = "on-failure" // restart on a non-zero exit, an OOM kill or a failed start
	Never     Restart = "never"      // never restart
)

// Policy says when and how fast to restart a container.
type Policy struct {
	// Restart is Always, OnFailure or Never.
	Restart Restart
	// InitialBackoff is the delay before the second restart in a row of
	// short runs (100ms when 0; the first is immediate); it doubles with
	// every restart that follows.
	InitialBackoff time.Duration
	// MaxBackoff caps the delay (30s when 0).
	MaxBackoff time.Duration
	// StableAfter is how long a run must last for the backoff to start
	// over (10s when 0): a container that ran that long was healthy.
	StableAfter time.Duration
}

// DefaultPolicy restarts always with the default backoff.
func DefaultPolicy() Policy {
	return Policy{Restart: Always}.withDefaults()
}

func (p Policy) withDefaults() Policy {
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = 100 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 30 * time.Second
	}
	if p.MaxBackoff < p.InitialBackoff {
		p.MaxBackoff = p.InitialBackoff
	}
	if p.StableAfter <= 0 {
		p.StableAfter = 10 * time.Second
	}
	return p
}

// Validate reports an unknown restart policy.
func (p Policy) Validate() error {
	switch p.Restart {
	case Always, OnFailure, Never:
		return nil
	}
	return fmt.Errorf("restart policy %q: want %q, %q or %q", p.Restart, Always, OnFailure, Never)
}

// Outcome is how a run ended, as far as the policy cares.
type Outcome struct {
	Code      int
	OOMKilled bool
	// StartErr is set when the container could not be started at all.
	StartErr error
}

// Failed says whether the run counts as a failure for OnFailure.
func (o Outcome) Failed() bool {
	return o.StartErr != nil || o.Code != 0 || o.OOMKilled
}

// Decide says whether to start the container again and after what delay.
// failures is the number of restarts since the last stable run, ran how long
// the last run lasted (0 for a failed start). It returns the failures count to
// pass next time. It reads no clock and never sleeps; an unknown policy never
// restarts.
//
// The first restart after a stable run (or the first run) is immediate: a
// container that crashed once is back within milliseconds. Every further
// restart without a stable run in between waits InitialBackoff *
// 2^(failures-1), capped at MaxBackoff; a run of at least StableAfter resets
// failures to 0 first. Quick clean exits under Always back off too: a
// container that exits 0 at once must not spin.
func Decide(p Policy, o Outcome, failures int, ran time.Duration) (restart bool, delay time.Duration, failuresNext int) {
	p = p.withDefaults()
	if ran >= p.StableAfter || failures < 0 {
		failures = 0
	}
	switch p.Restart {
	case Always:
	case OnFailure:
		if !o.Failed() {
			return false, 0, 0
		}
	default:
		return false, 0, failures
	}
	if failures == 0 {
		return true, 0, 1
	}
	return true, backoff(p, failures-1), failures + 1
}

// backoff is InitialBackoff doubled n times, capped at MaxBackoff (and safe
// from overflow for any n).
func backoff(p Policy, n int) time.Duration {
	d := p.InitialBackoff
	for i := 0; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.MaxBackoff)
}

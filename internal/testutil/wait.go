package testutil

import (
	"testing"
	"time"
)

// pollInterval is short enough that tests do not idle and long enough that
// polling does not compete with the code under test.
const pollInterval = 20 * time.Millisecond

// WaitFor calls check until it returns nil and fails the test with check's
// last error if that does not happen within timeout. Use it instead of sleeps
// to wait for a state another process or goroutine brings about.
func WaitFor(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	if err := Poll(timeout, check); err != nil {
		t.Fatalf("not true after %v: %v", timeout, err)
	}
}

// Poll is WaitFor without a test: it returns check's last error on timeout,
// for helpers that report on their own.
func Poll(timeout time.Duration, check func() error) error {
	return PollEvery(timeout, pollInterval, check)
}

// PollEvery is Poll at another interval: benchmarks that time a state
// poll more often.
func PollEvery(timeout, interval time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

package testutil

import (
	"errors"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	n := 0
	err := Poll(5*time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Errorf("Poll = %v after %d calls, want nil after 3", err, n)
	}
	last := 0
	err = Poll(50*time.Millisecond, func() error {
		last++
		return errors.New("attempt " + string(rune('0'+last%10)))
	})
	if err == nil || err.Error() != "attempt "+string(rune('0'+last%10)) {
		t.Errorf("Poll on timeout = %v, want the last error (attempt %d)", err, last)
	}
	WaitFor(t, time.Second, func() error { return nil })
}

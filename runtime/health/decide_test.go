package health

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDecide(t *testing.T) {
	ok := Result{OK: true}
	fail := Result{Output: "exit code 1"}
	c := Check{Exec: []string{"true"}, Retries: 3, StartPeriod: 30 * time.Second}
	tests := []struct {
		name        string
		check       Check
		prev        State
		r           Result
		since       time.Duration
		want        State
		wantChanged bool
	}{
		{"zero state is starting", c, State{}, fail, time.Minute, State{Starting, 1}, false},
		{"success in start period", c, State{Starting, 0}, ok, time.Second, State{Healthy, 0}, true},
		{"failure in start period does not count", c, State{Starting, 0}, fail, 29 * time.Second, State{Starting, 0}, false},
		{"start period ends at StartPeriod", c, State{Starting, 0}, fail, 30 * time.Second, State{Starting, 1}, false},
		{"failures below retries stay starting", c, State{Starting, 1}, fail, time.Minute, State{Starting, 2}, false},
		{"retries-th failure: unhealthy from starting", c, State{Starting, 2}, fail, time.Minute, State{Unhealthy, 3}, true},
		{"healthy counts failures", c, State{Healthy, 0}, fail, time.Minute, State{Healthy, 1}, false},
		{"retries-th failure: unhealthy from healthy", c, State{Healthy, 2}, fail, time.Minute, State{Unhealthy, 3}, true},
		{"unhealthy keeps counting", c, State{Unhealthy, 3}, fail, time.Minute, State{Unhealthy, 4}, false},
		{"recovery", c, State{Unhealthy, 7}, ok, time.Minute, State{Healthy, 0}, true},
		{"success resets failures", c, State{Healthy, 2}, ok, time.Minute, State{Healthy, 0}, false},
		{"errors are failures", c, State{Healthy, 2}, Result{Err: ErrTimeout}, time.Minute, State{Unhealthy, 3}, true},
		{"default retries is 3", Check{Exec: []string{"x"}}, State{Healthy, 1}, fail, 0, State{Healthy, 2}, false},
		{"default retries reached", Check{Exec: []string{"x"}}, State{Healthy, 2}, fail, 0, State{Unhealthy, 3}, true},
		{"no start period by default", Check{Exec: []string{"x"}, Retries: 1}, State{Starting, 0}, fail, 0, State{Unhealthy, 1}, true},
		{"failure after unhealthy in start period", c, State{Unhealthy, 3}, fail, time.Second, State{Unhealthy, 3}, false},
		{"a failure while the node is busy does not count", c, State{Healthy, 2}, Result{Err: ErrTimeout, Busy: true}, time.Minute, State{Healthy, 2}, false},
		{"a success while the node is busy counts", c, State{Starting, 2}, Result{OK: true, Busy: true}, time.Minute, State{Healthy, 0}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := Decide(tt.check, tt.prev, tt.r, tt.since)
			if diff := cmp.Diff(tt.want, got); diff != "" || changed != tt.wantChanged {
				t.Errorf("Decide(%+v, %v) = %+v, %v; want %+v, %v", tt.prev, tt.r.OK, got, changed, tt.want, tt.wantChanged)
			}
		})
	}
}

// A run of results through Decide, as Run feeds it.
func TestDecideSequence(t *testing.T) {
	c := Check{Exec: []string{"x"}, Interval: 10 * time.Second, Retries: 2, StartPeriod: 25 * time.Second}
	//             10s    20s    30s    40s    50s   60s    70s    80s
	results := []bool{false, false, false, true, false, false, false, true}
	want := []Verdict{"", "", "", Healthy, "", Unhealthy, "", Healthy}
	var s State
	for i, ok := range results {
		since := time.Duration(i+1) * c.Interval
		next, changed := Decide(c, s, Result{OK: ok}, since)
		var got Verdict
		if changed {
			got = next.Status
		}
		if got != want[i] {
			t.Errorf("probe at %s: change %q, want %q (state %+v)", since, got, want[i], next)
		}
		s = next
	}
}

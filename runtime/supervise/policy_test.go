package supervise

import (
	"errors"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	const ms = time.Millisecond
	fail := Outcome{Code: 1}
	ok := Outcome{Code: 0}
	oom := Outcome{Code: 137, OOMKilled: true}
	startErr := Outcome{Code: -1, StartErr: errors.New("exec /app: no such file")}
	custom := Policy{Restart: Always, InitialBackoff: 10 * ms, MaxBackoff: 50 * ms, StableAfter: time.Second}
	for _, tc := range []struct {
		name     string
		p        Policy
		o        Outcome
		failures int
		ran      time.Duration
		restart  bool
		delay    time.Duration
		next     int
	}{
		{"always first failure is immediate", Policy{Restart: Always}, fail, 0, ms, true, 0, 1},
		{"always second failure", Policy{Restart: Always}, fail, 1, ms, true, 100 * ms, 2},
		{"always doubles", Policy{Restart: Always}, fail, 3, ms, true, 400 * ms, 4},
		{"always caps", Policy{Restart: Always}, fail, 20, ms, true, 30 * time.Second, 21},
		{"always huge count does not overflow", Policy{Restart: Always}, fail, 1 << 30, ms, true, 30 * time.Second, 1<<30 + 1},
		{"always clean quick exit backs off", Policy{Restart: Always}, ok, 2, ms, true, 200 * ms, 3},
		{"stable run resets", Policy{Restart: Always}, fail, 7, 10 * time.Second, true, 0, 1},
		{"just short of stable", Policy{Restart: Always}, fail, 2, 10*time.Second - ms, true, 200 * ms, 3},
		{"custom backoff", custom, fail, 2, ms, true, 20 * ms, 3},
		{"custom doubles", custom, fail, 3, ms, true, 40 * ms, 4},
		{"custom cap", custom, fail, 4, ms, true, 50 * ms, 5},
		{"custom stable", custom, fail, 3, time.Second, true, 0, 1},
		{"custom after stable", custom, fail, 1, ms, true, 10 * ms, 2},
		{"on-failure clean exit", Policy{Restart: OnFailure}, ok, 3, ms, false, 0, 0},
		{"on-failure failure", Policy{Restart: OnFailure}, fail, 2, ms, true, 200 * ms, 3},
		{"on-failure oom", Policy{Restart: OnFailure}, oom, 0, ms, true, 0, 1},
		{"on-failure start error", Policy{Restart: OnFailure}, startErr, 0, 0, true, 0, 1},
		{"on-failure start error again", Policy{Restart: OnFailure}, startErr, 1, 0, true, 100 * ms, 2},
		{"negative failures count as none", Policy{Restart: Always}, fail, -3, ms, true, 0, 1},
		{"never", Policy{Restart: Never}, fail, 0, ms, false, 0, 0},
		{"never start error", Policy{Restart: Never}, startErr, 0, 0, false, 0, 0},
		{"unknown never restarts", Policy{Restart: "sometimes"}, fail, 0, ms, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restart, delay, next := Decide(tc.p, tc.o, tc.failures, tc.ran)
			if restart != tc.restart || delay != tc.delay || next != tc.next {
				t.Errorf("Decide = %v, %v, %d; want %v, %v, %d", restart, delay, next, tc.restart, tc.delay, tc.next)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, r := range []Restart{Always, OnFailure, Never} {
		if err := (Policy{Restart: r}).Validate(); err != nil {
			t.Errorf("Validate(%q): %v", r, err)
		}
	}
	for _, r := range []Restart{"", "Always", "unless-stopped"} {
		if err := (Policy{Restart: r}).Validate(); err == nil {
			t.Errorf("Validate(%q) accepted it", r)
		}
	}
	if d := DefaultPolicy(); d.Restart != Always || d.InitialBackoff != 100*time.Millisecond || d.MaxBackoff != 30*time.Second || d.StableAfter != 10*time.Second {
		t.Errorf("DefaultPolicy() = %+v", d)
	}
}

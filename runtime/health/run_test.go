package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// script is an Exec target whose n-th call exits with codes[n] (the last
// code repeats) and prints "probe n+1".
type script struct {
	mu    sync.Mutex
	codes []int
	calls int
}

func (s *script) exec(ctx context.Context, args []string, out io.Writer) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.calls
	s.calls++
	fmt.Fprintf(out, "probe %d", i+1)
	return s.codes[min(i, len(s.codes)-1)], nil
}

// event is a Status with the fake time since the test began.
type event struct {
	At time.Duration
	Status
}

// recorder collects Run's reports.
type recorder struct {
	mu     sync.Mutex
	t0     time.Time
	events []event
}

func newRecorder() *recorder { return &recorder{t0: time.Now()} }

func (r *recorder) onChange(s Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{time.Since(r.t0), s})
}

func (r *recorder) get() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// runFor runs Run in a synctest bubble for d of fake time, cancels it and
// checks it returned.
func runFor(t *testing.T, d time.Duration, c Check, tgt Target) []event {
	t.Helper()
	var got []event
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			Run(ctx, c, tgt, nil, rec.onChange)
		}()
		time.Sleep(d) // fake time: advances as soon as the bubble is idle
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("Run did not return after cancel")
		}
		got = rec.get()
	})
	return got
}

func TestRunSequence(t *testing.T) {
	s := &script{codes: []int{1, 0, 1, 1, 1, 0, 0}}
	c := Check{Exec: []string{"check"}, Interval: 10 * time.Second, Retries: 3}
	got := runFor(t, 75*time.Second, c, Target{Exec: s.exec})
	want := []event{
		{0, Status{State: Starting}},
		{20 * time.Second, Status{State: Healthy, LastOutput: "probe 2"}},
		{50 * time.Second, Status{State: Unhealthy, Failures: 3, LastOutput: "probe 5"}},
		{60 * time.Second, Status{State: Healthy, LastOutput: "probe 6"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if s.calls != 7 {
		t.Errorf("%d probes in 75s at 10s intervals, want 7", s.calls)
	}
}

func TestRunDefaults(t *testing.T) {
	s := &script{codes: []int{1}}
	got := runFor(t, 35*time.Second, Check{Exec: []string{"check"}}, Target{Exec: s.exec})
	want := []event{
		{0, Status{State: Starting}},
		{30 * time.Second, Status{State: Unhealthy, Failures: 3, LastOutput: "probe 3"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestRunStartPeriod(t *testing.T) {
	c := Check{Exec: []string{"check"}, Interval: 10 * time.Second, Retries: 2, StartPeriod: 25 * time.Second}
	t.Run("failures in it do not count", func(t *testing.T) {
		s := &script{codes: []int{1}}
		got := runFor(t, 45*time.Second, c, Target{Exec: s.exec})
		want := []event{
			{0, Status{State: Starting}},
			// 10s and 20s are inside the start period; 30s and 40s count.
			{40 * time.Second, Status{State: Unhealthy, Failures: 2, LastOutput: "probe 4"}},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
	t.Run("a success in it is healthy", func(t *testing.T) {
		s := &script{codes: []int{1, 0}}
		got := runFor(t, 25*time.Second, c, Target{Exec: s.exec})
		want := []event{
			{0, Status{State: Starting}},
			{20 * time.Second, Status{State: Healthy, LastOutput: "probe 2"}},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

func TestRunTimeout(t *testing.T) {
	hang := func(ctx context.Context, args []string, _ io.Writer) (int, error) {
		<-ctx.Done()
		return -1, ctx.Err()
	}
	c := Check{Exec: []string{"check"}, Interval: 10 * time.Second, Timeout: 2 * time.Second, Retries: 1}
	got := runFor(t, 15*time.Second, c, Target{Exec: hang})
	if len(got) != 2 || got[1].State != Unhealthy || got[1].At != 12*time.Second {
		t.Fatalf("events %+v; want starting, then unhealthy at 12s", got)
	}
	if out := got[1].LastOutput; !strings.Contains(out, "timed out after 2s") {
		t.Errorf("LastOutput %q does not say it timed out", out)
	}
}

// Cancelling Run during a probe returns at once and reports nothing of it.
func TestRunCancelDuringProbe(t *testing.T) {
	hang := func(ctx context.Context, args []string, _ io.Writer) (int, error) {
		<-ctx.Done()
		return -1, ctx.Err()
	}
	c := Check{Exec: []string{"check"}, Interval: 10 * time.Second, Timeout: 10 * time.Second, Retries: 1}
	got := runFor(t, 15*time.Second, c, Target{Exec: hang})
	if diff := cmp.Diff([]event{{0, Status{State: Starting}}}, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestRunExecUnsupported(t *testing.T) {
	c := Check{Exec: []string{"check"}, Interval: time.Second, Retries: 1}
	got := runFor(t, 1500*time.Millisecond, c, Target{})
	want := []event{
		{0, Status{State: Starting}},
		{time.Second, Status{State: Unhealthy, Failures: 1, LastOutput: ErrExecUnsupported.Error()}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestRunInvalidCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		Run(t.Context(), Check{TCP: "nowhere"}, Target{}, nil, rec.onChange)
		got := rec.get()
		if len(got) != 2 || got[0].State != Starting || got[1].State != Unhealthy || !strings.Contains(got[1].LastOutput, "invalid health check") {
			t.Fatalf("events %+v; want starting, then unhealthy with the validation error", got)
		}
	})
}

// fakeClock shows the Clock is the loop's only time source: After fires at
// once, having moved Now on by d, and records what it was asked.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func TestRunInjectedClock(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s := &script{codes: []int{1, 1, 0, 1}}
	var got []Status
	c := Check{Exec: []string{"check"}, Interval: 7 * time.Second, Retries: 1, StartPeriod: 15 * time.Second}
	Run(ctx, c, Target{Exec: s.exec}, clk, func(st Status) {
		got = append(got, st)
		if st.State == Unhealthy {
			cancel()
		}
	})
	want := []Status{
		{State: Starting},
		// The probes at 7s and 14s fail inside the start period.
		{State: Healthy, LastOutput: "probe 3"},                // 21s
		{State: Unhealthy, Failures: 1, LastOutput: "probe 4"}, // 28s
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	for i, d := range clk.waits {
		if d != 7*time.Second {
			t.Errorf("wait %d was %s, want the 7s interval", i, d)
		}
	}
}

func TestResultSummary(t *testing.T) {
	for _, tt := range []struct {
		r    Result
		want string
	}{
		{Result{OK: true, Output: "200 OK"}, "200 OK"},
		{Result{Output: "exit code 2"}, "exit code 2"},
		{Result{Err: errors.New("connection refused")}, "connection refused"},
		{Result{Err: errors.New("exec check: boom"), Output: "half"}, "exec check: boom: half"},
	} {
		if got := tt.r.Summary(); got != tt.want {
			t.Errorf("%+v.Summary() = %q, want %q", tt.r, got, tt.want)
		}
	}
}

// While the node says it is busy, Run does not probe, and a failure of a
// probe during which it became busy does not count; once the node is
// idle again, failures count as before.
func TestRunBusyNode(t *testing.T) {
	c := Check{Exec: []string{"check"}, Interval: 10 * time.Second, Retries: 2}
	var (
		mu       sync.Mutex
		busyFrom time.Time // zero: not busy
		busyTill time.Time
	)
	s := &script{codes: []int{1}}
	var got []event
	synctest.Test(t, func(t *testing.T) {
		tgt := Target{
			Exec: func(ctx context.Context, args []string, out io.Writer) (int, error) {
				code, err := s.exec(ctx, args, out)
				// The node turns busy while the second probe runs.
				if s.calls == 2 {
					mu.Lock()
					busyFrom, busyTill = time.Now(), time.Now().Add(25*time.Second)
					mu.Unlock()
				}
				return code, err
			},
			Busy: func(since time.Time) bool {
				mu.Lock()
				defer mu.Unlock()
				return !busyFrom.IsZero() && !busyTill.Before(since) && !time.Now().Before(busyFrom)
			},
		}
		rec := newRecorder()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			Run(ctx, c, tgt, nil, rec.onChange)
		}()
		time.Sleep(75 * time.Second)
		cancel()
		<-done
		got = rec.get()
	})
	// 10s: fails (1). 20s: fails, but the node turned busy during it: not
	// counted. 30s, 40s: busy, not probed. 50s: busy since the wait
	// began at 40s (till 45s): fails, not counted. 60s: fails (2):
	// unhealthy.
	want := []event{
		{0, Status{State: Starting}},
		{60 * time.Second, Status{State: Unhealthy, Failures: 2, LastOutput: "probe 4"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if s.calls != 5 {
		t.Errorf("%d probes, want 5 (none while busy)", s.calls)
	}
}

package supervise

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/shoal-edge/shoal/runtime/exit"
)

// fake is a Process that runs for its script's duration and exits with its
// code, in synctest's fake time.
type fake struct {
	pid      int
	done     chan struct{}
	exit     exit.Status
	once     sync.Once
	stopped  bool
	deleted  int
	ignoreTM bool
}

func newFake(pid int, run time.Duration, code int, ignoreTerm bool) *fake {
	f := &fake{pid: pid, done: make(chan struct{}), ignoreTM: ignoreTerm}
	if run >= 0 {
		go func() {
			time.Sleep(run)
			f.finish(exit.Status{Code: code})
		}()
	}
	return f
}

func (f *fake) finish(ex exit.Status) {
	f.once.Do(func() {
		f.exit = ex
		close(f.done)
	})
}

func (f *fake) Pid() int { return f.pid }

func (f *fake) Wait() exit.Status {
	<-f.done
	return f.exit
}

func (f *fake) Stop(grace time.Duration) error {
	f.stopped = true
	if !f.ignoreTM {
		f.finish(exit.Status{Code: 143, Signal: syscall.SIGTERM})
		return nil
	}
	time.Sleep(grace)
	f.finish(exit.Status{Code: 137, Signal: syscall.SIGKILL})
	return nil
}

func (f *fake) Delete() error {
	f.deleted++
	return nil
}

// script is a Start that hands out the next step each call: a process that
// runs for a while and exits with a code, or a start error.
type step struct {
	run        time.Duration // < 0: runs until stopped
	code       int
	err        error
	ignoreTerm bool
}

type recorder struct {
	events []Event
	procs  []*fake
	at     []time.Duration // fake time since the test began, per event
	begin  time.Time
}

func (r *recorder) start(steps []step) func(context.Context) (Process, error) {
	i := 0
	return func(ctx context.Context) (Process, error) {
		s := steps[min(i, len(steps)-1)]
		i++
		if s.err != nil {
			return nil, s.err
		}
		f := newFake(100+i, s.run, s.code, s.ignoreTerm)
		r.procs = append(r.procs, f)
		return f, nil
	}
}

func (r *recorder) onEvent(e Event) {
	r.events = append(r.events, e)
	r.at = append(r.at, time.Since(r.begin))
}

func (r *recorder) states() string {
	var s []string
	for _, e := range r.events {
		s = append(s, string(e.State))
	}
	return strings.Join(s, " ")
}

func TestRunBacksOffAndCountsRestarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{begin: time.Now()}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			err = Run(ctx, Config{
				Start:   r.start([]step{{run: time.Second, code: 1}, {run: time.Second, code: 1}, {run: time.Second, code: 0}, {run: -1}}),
				Policy:  Policy{Restart: Always},
				OnEvent: r.onEvent,
			})
		}()
		// Runs of 1s, each followed by no delay, then 100ms, 200ms.
		time.Sleep(3*time.Second + 300*time.Millisecond + time.Millisecond)
		synctest.Wait()
		cancel()
		<-done
		if err != nil {
			t.Fatal(err)
		}
		want := "starting running exited starting running exited starting running exited starting running exited"
		if got := r.states(); got != want {
			t.Fatalf("events = %s\nwant %s", got, want)
		}
		starts := []time.Duration{}
		for i, e := range r.events {
			if e.State == Starting {
				starts = append(starts, r.at[i])
				if e.Restarts != len(starts)-1 {
					t.Errorf("event %d: Restarts = %d, want %d", i, e.Restarts, len(starts)-1)
				}
			}
		}
		wantStarts := []time.Duration{0, 1000 * time.Millisecond, 2100 * time.Millisecond, 3300 * time.Millisecond}
		if diff := cmp.Diff(wantStarts, starts); diff != "" {
			t.Errorf("start times (-want +got):\n%s", diff)
		}
		last := r.events[len(r.events)-1]
		if last.ExitCode != 143 || last.Restarts != 3 {
			t.Errorf("last event = %+v, want the SIGTERM exit after 3 restarts", last)
		}
		for i, p := range r.procs {
			if p.deleted == 0 {
				t.Errorf("process %d not deleted", i)
			}
		}
		if !r.procs[3].stopped {
			t.Error("running process not stopped on cancel")
		}
	})
}

func TestRunStableRunResetsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{begin: time.Now()}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = Run(ctx, Config{
				Start:   r.start([]step{{run: 0, code: 1}, {run: 0, code: 1}, {run: 20 * time.Second, code: 1}, {run: -1}}),
				Policy:  Policy{Restart: OnFailure},
				OnEvent: r.onEvent,
			})
		}()
		// 0 + 0, 0 + 100ms, 20s + 0 (reset), then running.
		time.Sleep(20*time.Second + 100*time.Millisecond + time.Millisecond)
		synctest.Wait()
		cancel()
		<-done
		var starts []time.Duration
		for i, e := range r.events {
			if e.State == Running {
				starts = append(starts, r.at[i])
			}
		}
		want := []time.Duration{0, 0, 100 * time.Millisecond, 20*time.Second + 100*time.Millisecond}
		if diff := cmp.Diff(want, starts); diff != "" {
			t.Errorf("run start times (-want +got):\n%s", diff)
		}
	})
}

func TestRunPolicyEnds(t *testing.T) {
	startErr := errors.New("exec /app: no such file or directory in the container")
	for _, tc := range []struct {
		name   string
		policy Restart
		steps  []step
		want   []Event
	}{
		{"never", Never, []step{{run: time.Second, code: 3}}, []Event{
			{State: Starting}, {State: Running, Pid: 101}, {State: Exited, Pid: 101, ExitCode: 3},
		}},
		{"on-failure clean exit", OnFailure, []step{{run: time.Second, code: 1}, {run: time.Second, code: 0}}, []Event{
			{State: Starting}, {State: Running, Pid: 101}, {State: Exited, Pid: 101, ExitCode: 1},
			{State: Starting, Restarts: 1}, {State: Running, Pid: 102, Restarts: 1}, {State: Exited, Pid: 102, Restarts: 1},
		}},
		{"never start error", Never, []step{{err: startErr}}, []Event{
			{State: Starting}, {State: Failed, Err: startErr},
		}},
		{"failed start retried", OnFailure, []step{{err: startErr}, {err: startErr}, {run: time.Second}}, []Event{
			{State: Starting}, {State: Failed, Err: startErr},
			{State: Starting, Restarts: 1}, {State: Failed, Restarts: 1, Err: startErr},
			{State: Starting, Restarts: 2}, {State: Running, Pid: 103, Restarts: 2}, {State: Exited, Pid: 103, Restarts: 2},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := &recorder{begin: time.Now()}
				err := Run(t.Context(), Config{Start: r.start(tc.steps), Policy: Policy{Restart: tc.policy}, OnEvent: r.onEvent})
				if err != nil {
					t.Fatal(err)
				}
				opts := cmp.Options{
					cmpopts.IgnoreFields(Event{}, "StartedAt"),
					cmp.Comparer(func(a, b error) bool { return fmt.Sprint(a) == fmt.Sprint(b) }),
				}
				if diff := cmp.Diff(tc.want, r.events, opts); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
				for i, p := range r.procs {
					if p.deleted != 1 {
						t.Errorf("process %d deleted %d times, want 1", i, p.deleted)
					}
				}
			})
		})
	}
}

func TestRunCancelStopsWithGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{begin: time.Now()}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = Run(ctx, Config{
				Start:   r.start([]step{{run: -1, ignoreTerm: true}}),
				Policy:  Policy{Restart: Always},
				Grace:   3 * time.Second,
				OnEvent: r.onEvent,
			})
		}()
		time.Sleep(time.Second)
		cancel()
		<-done
		if got := time.Since(r.begin); got != 4*time.Second {
			t.Errorf("Run returned after %v, want 1s + 3s grace", got)
		}
		last := r.events[len(r.events)-1]
		if last.State != Exited || last.ExitCode != 137 || r.procs[0].deleted != 1 {
			t.Errorf("last event %+v, deleted %d", last, r.procs[0].deleted)
		}
	})
}

func TestRunConfigErrors(t *testing.T) {
	if err := Run(t.Context(), Config{Policy: Policy{Restart: Always}}); err == nil {
		t.Error("Run without Start: no error")
	}
	start := func(context.Context) (Process, error) { return nil, errors.New("unused") }
	if err := Run(t.Context(), Config{Start: start, Policy: Policy{Restart: "sometimes"}}); err == nil {
		t.Error("Run with an unknown policy: no error")
	}
}

// fakeClock shows a Clock can be injected: After fires at once, so the loop
// runs through its backoff without waiting.
type fakeClock struct {
	now    time.Time
	delays []time.Duration
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.delays = append(c.delays, d)
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func TestRunInjectedClock(t *testing.T) {
	clk := &fakeClock{now: time.Unix(0, 0)}
	n := 0
	start := func(context.Context) (Process, error) {
		n++
		code := 1
		if n == 4 {
			code = 0
		}
		f := &fake{pid: n, done: make(chan struct{})}
		f.finish(exit.Status{Code: code})
		return f, nil
	}
	if err := Run(t.Context(), Config{Start: start, Policy: Policy{Restart: OnFailure}, Clock: clk}); err != nil {
		t.Fatal(err)
	}
	// The first restart is immediate and does not even ask the clock.
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}
	if diff := cmp.Diff(want, clk.delays); diff != "" {
		t.Errorf("delays (-want +got):\n%s", diff)
	}
}

// adopted is a fake that already ran for a while and can be released.
type adopted struct {
	*fake
	startedAt time.Time
	closed    bool
}

func (a *adopted) StartedAt() time.Time { return a.startedAt }

func (a *adopted) Close() error {
	a.closed = true
	a.finish(exit.Status{Code: -1, Err: errors.New("released")})
	return nil
}

func TestRunAdopted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{begin: time.Now()}
		// It has run for an hour (stable), and crashes a second from now.
		a := &adopted{fake: newFake(7, time.Second, 2, false), startedAt: time.Now().Add(-time.Hour)}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = Run(ctx, Config{
				Adopt:   a,
				Start:   r.start([]step{{run: -1}}),
				Policy:  Policy{Restart: Always},
				OnEvent: r.onEvent,
			})
		}()
		time.Sleep(time.Second)
		synctest.Wait()
		cancel()
		<-done
		want := []Event{
			{State: Running, Pid: 7, StartedAt: a.startedAt},
			{State: Exited, Pid: 7, ExitCode: 2, StartedAt: a.startedAt},
			// After a stable run, the restart is immediate.
			{State: Starting, Restarts: 1},
			{State: Running, Pid: 101, Restarts: 1, StartedAt: r.begin.Add(time.Second)},
			{State: Exited, Pid: 101, Restarts: 1, ExitCode: 143, StartedAt: r.begin.Add(time.Second)},
		}
		if diff := cmp.Diff(want, r.events, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if r.at[3] != time.Second {
			t.Errorf("restarted at %v, want at once (1s)", r.at[3])
		}
		if a.deleted != 1 {
			t.Errorf("adopted process deleted %d times, want 1", a.deleted)
		}
	})
}

func TestRunDetachLeavesRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{begin: time.Now()}
		a := &adopted{fake: newFake(7, -1, 0, false)}
		detach := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = Run(t.Context(), Config{
				Adopt:   a,
				Detach:  detach,
				Start:   r.start([]step{{run: -1}}),
				Policy:  Policy{Restart: Always},
				OnEvent: r.onEvent,
			})
		}()
		time.Sleep(time.Second)
		close(detach)
		<-done
		if a.stopped || a.deleted != 0 || !a.closed {
			t.Errorf("detached process: stopped %v, deleted %d, closed %v; want only closed", a.stopped, a.deleted, a.closed)
		}
		if got := r.states(); got != "running" {
			t.Errorf("events %s, want only running", got)
		}
	})
}

func TestRunDetachStopsWhatCannotOutlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{begin: time.Now()}
		detach := make(chan struct{})
		done := make(chan struct{})
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			defer close(done)
			_ = Run(ctx, Config{
				Detach:  detach,
				Start:   r.start([]step{{run: -1}}),
				Policy:  Policy{Restart: Always},
				OnEvent: r.onEvent,
			})
		}()
		time.Sleep(time.Second)
		close(detach)
		synctest.Wait()
		// A plain process is not released: it runs until ctx ends.
		if r.procs[0].stopped {
			t.Error("a process without Close was stopped on detach")
		}
		cancel()
		<-done
		if !r.procs[0].stopped || r.procs[0].deleted != 1 {
			t.Errorf("stopped %v, deleted %d", r.procs[0].stopped, r.procs[0].deleted)
		}
	})
}

// With OverlapDelete the next start does not wait for the exited
// container's delete, and Run still returns only after it.
func TestOverlapDelete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		starts := 0
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			Run(ctx, Config{
				Policy:        Policy{Restart: Always},
				OverlapDelete: true,
				Start: func(context.Context) (Process, error) {
					starts++
					if starts == 1 {
						p := &blockingDelete{release: release, exited: make(chan struct{})}
						close(p.exited) // exits at once; its delete blocks
						return p, nil
					}
					return &blockingDelete{release: closedChan(), exited: make(chan struct{})}, nil
				},
			})
		}()
		synctest.Wait()
		if starts != 2 {
			t.Fatalf("%d starts while the first delete is blocked, want the restart (2)", starts)
		}
		cancel()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("Run returned before the pending delete finished")
		default:
		}
		close(release)
		<-done
	})
}

type blockingDelete struct {
	release <-chan struct{}
	exited  chan struct{}
	once    sync.Once
}

func (b *blockingDelete) Pid() int { return 42 }
func (b *blockingDelete) Wait() exit.Status {
	<-b.exited
	return exit.Status{Code: 1}
}
func (b *blockingDelete) Stop(time.Duration) error {
	b.once.Do(func() {
		select {
		case <-b.exited:
		default:
			close(b.exited)
		}
	})
	return nil
}
func (b *blockingDelete) Delete() error { <-b.release; return nil }

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// OnEnd tells the policy's end from a stop: called once when "never"
// ends supervision, not when ctx is cancelled.
func TestOnEnd(t *testing.T) {
	for _, tc := range []struct {
		name   string
		exits  bool
		policy Restart
		want   int
	}{
		{"policy ends it", true, Never, 1},
		{"cancelled", false, Always, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ends := 0
			ctx, cancel := context.WithCancel(context.Background())
			started := make(chan struct{}, 1)
			done := make(chan struct{})
			go func() {
				defer close(done)
				Run(ctx, Config{
					Policy: Policy{Restart: tc.policy},
					OnEnd:  func() { ends++ },
					Start: func(context.Context) (Process, error) {
						p := &blockingDelete{release: closedChan(), exited: make(chan struct{})}
						if tc.exits {
							close(p.exited)
						}
						started <- struct{}{}
						return p, nil
					},
				})
			}()
			<-started
			if !tc.exits {
				cancel()
			}
			<-done
			cancel()
			if ends != tc.want {
				t.Fatalf("OnEnd called %d times, want %d", ends, tc.want)
			}
		})
	}
}

// BeforeStop runs before the container is told to stop, and holds the
// stop back as long as it takes.
func TestBeforeStopHoldsTheStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{begin: time.Now()}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		var stoppedBefore []bool
		go func() {
			defer close(done)
			_ = Run(ctx, Config{
				Start:  r.start([]step{{run: -1, ignoreTerm: true}}),
				Policy: Policy{Restart: Always},
				Grace:  3 * time.Second,
				BeforeStop: func() {
					stoppedBefore = append(stoppedBefore, r.procs[0].stopped)
					time.Sleep(2 * time.Second)
				},
				OnEvent: r.onEvent,
			})
		}()
		time.Sleep(time.Second)
		cancel()
		<-done
		if got := time.Since(r.begin); got != 6*time.Second {
			t.Errorf("Run returned after %v, want 1s + 2s held + 3s grace", got)
		}
		if !slices.Equal(stoppedBefore, []bool{false}) {
			t.Errorf("BeforeStop calls, with the process stopped already: %v, want one before the stop", stoppedBefore)
		}
	})
}

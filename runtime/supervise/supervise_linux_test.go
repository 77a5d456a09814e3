package supervise

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/runtime/linux"
)

// workload is the container program: "exit N" exits with N, anything else
// sleeps an hour. It is built static into the test image by TestMain.
const workload = `package main

import (
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "exit" {
		n, _ := strconv.Atoi(os.Args[2])
		os.Exit(n)
	}
	time.Sleep(time.Hour)
}
`

// imageDir is the test image rootfs, with the workload at /app.
var imageDir string

func TestMain(m *testing.M) {
	// linux.Runtime re-executes this binary as the container init.
	if linux.IsInit(os.Args) {
		linux.InitMain()
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, cleanup, err := testutil.BuildWorkload(workload)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	imageDir = dir
	return m.Run()
}

// containerConfig returns a Config whose Start runs args in a container
// with a fixed id (every restart reuses it, so Delete must have removed the
// previous one), on a Runtime of its own.
func containerConfig(t *testing.T, args ...string) (Config, linux.Config, string, <-chan Event) {
	testutil.RequireRoot(t)
	lcfg := linux.Config{
		StateDir:     filepath.Join(t.TempDir(), "containers"),
		CgroupParent: testutil.CgroupParent(t),
	}
	rt, err := linux.New(lcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Cleanup(nil); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
	id := fmt.Sprintf("sup-%d", rand.Uint32())
	events := make(chan Event, 100)
	cfg := Config{
		Start: func(ctx context.Context) (Process, error) {
			c, err := rt.Start(ctx, linux.Spec{ID: id, Image: imageDir, Args: append([]string{"/app"}, args...)})
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		Policy:  Policy{Restart: Always, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
		Grace:   time.Second,
		OnEvent: func(e Event) { events <- e },
	}
	return cfg, lcfg, id, events
}

// next returns the next event, failing after a deadline.
func next(t *testing.T, events <-chan Event) Event {
	t.Helper()
	select {
	case e := <-events:
		return e
	case <-time.After(15 * time.Second):
		t.Fatal("no event within 15s")
		return Event{}
	}
}

// assertClean checks nothing of the container is left on the host.
func assertClean(t *testing.T, lcfg linux.Config, id string) {
	t.Helper()
	testutil.AssertContainerGone(t, lcfg.StateDir, lcfg.CgroupParent, id)
}

func TestSuperviseRestartsKilledContainer(t *testing.T) {
	cfg, lcfg, id, events := containerConfig(t, "sleep")
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	for restart := 0; restart <= 2; restart++ {
		if e := next(t, events); e.State != Starting || e.Restarts != restart {
			t.Fatalf("event %+v, want starting with %d restarts", e, restart)
		}
		e := next(t, events)
		if e.State != Running || e.Pid == 0 {
			t.Fatalf("event %+v, want running", e)
		}
		if restart == 2 {
			break
		}
		// Kill it behind the supervisor's back.
		if err := syscall.Kill(e.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if e := next(t, events); e.State != Exited || e.ExitCode != 137 || e.Err != nil {
			t.Fatalf("event %+v, want exited 137", e)
		}
	}
	cancel()
	if e := next(t, events); e.State != Exited || e.Restarts != 2 {
		t.Errorf("event after cancel %+v, want exited after 2 restarts", e)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	assertClean(t, lcfg, id)
}

func TestSuperviseNeverStops(t *testing.T) {
	cfg, lcfg, id, events := containerConfig(t, "exit", "3")
	t.Parallel()
	cfg.Policy.Restart = Never
	if err := Run(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	// OnEvent runs on Run's goroutine: every event is buffered by now.
	var got []State
	var last Event
	for len(events) > 0 {
		last = <-events
		got = append(got, last.State)
	}
	if fmt.Sprint(got) != "[starting running exited]" || last.ExitCode != 3 {
		t.Errorf("events %v, last %+v; want one run exiting 3", got, last)
	}
	assertClean(t, lcfg, id)
}

func TestSuperviseFailedStartRetries(t *testing.T) {
	cfg, lcfg, id, events := containerConfig(t)
	t.Parallel()
	// The first two starts fail, as when the image is still being pulled.
	start := cfg.Start
	calls := 0
	cfg.Start = func(ctx context.Context) (Process, error) {
		calls++
		if calls <= 2 {
			return nil, errors.New("image not there yet")
		}
		return start(ctx)
	}
	cfg.Policy.Restart = OnFailure
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	for {
		e := next(t, events)
		if e.State == Running {
			if e.Restarts != 2 {
				t.Errorf("running after %d restarts, want 2", e.Restarts)
			}
			break
		}
		if e.State == Failed && e.Err == nil {
			t.Errorf("failed event without error: %+v", e)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	assertClean(t, lcfg, id)
}

package agent

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/internal/testutil/storetest"
	"github.com/shoal-edge/shoal/store"
)

// An instance runs exactly the version its allocation names. Here the
// app's spec changed (version 3) while the allocation still names version
// 1, as during a rollout: the agent starts version 1's command and env,
// restarts it with them after a crash, and runs version 3 only once the
// allocation names it. The desired state is a real state file fed
// through the FSM.
func TestRunsTheAllocationsVersion(t *testing.T) {
	st, apply := storetest.Fed(t)
	spec := func(cmd string) api.App {
		a := api.App{Name: "web", Image: "img", Command: []string{cmd}, Env: map[string]string{"SPEC": cmd}, Restart: api.RestartAlways}
		a.Defaults()
		return a
	}
	apply(store.PutApps{Apps: []api.App{spec("one")}})                                            // version 1
	apply(store.SetAllocs{Put: []api.Allocation{{App: "web", Index: 0, Version: 1, Node: "n1"}}}) // 2
	apply(store.PutApps{Apps: []api.App{spec("three")}})                                          // version 3

	rt := &fakeRuntime{}
	a, err := New(Config{Node: "n1", LogDir: t.TempDir(), Desired: st, Runtime: rt})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// waitStarts waits for the nth start and returns its spec.
	waitStarts := func(n int) api.App {
		t.Helper()
		testutil.WaitFor(t, 10*time.Second, func() error {
			if s := statusOf(a, "web/0"); rt.n() < n || s.State != api.StateRunning {
				return fmt.Errorf("%d starts, state %q %s; want %d starts, running", rt.n(), s.State, s.Error, n)
			}
			return nil
		})
		_, app := rt.last()
		return app
	}
	want := func(what string, got api.App, cmd string, version uint64) {
		t.Helper()
		if !slices.Equal(got.Command, []string{cmd}) || got.Env["SPEC"] != cmd || got.Version != version {
			t.Fatalf("%s: ran command %q env SPEC=%q version %d, want %q, SPEC=%q, version %d",
				what, got.Command, got.Env["SPEC"], got.Version, cmd, cmd, version)
		}
	}
	want("start", waitStarts(1), "one", 1)
	if s := statusOf(a, "web/0"); s.Version != 1 {
		t.Fatalf("status version %d, want 1", s.Version)
	}

	p, _ := rt.last()
	p.end() // the container crashes: restart: always
	want("restart after a crash", waitStarts(2), "one", 1)

	apply(store.SetAllocs{Put: []api.Allocation{{App: "web", Index: 0, Version: 3, Node: "n1"}}})
	want("after the allocation moved", waitStarts(3), "three", 3)
	testutil.WaitFor(t, 10*time.Second, func() error {
		if s := statusOf(a, "web/0"); s.Version != 3 {
			return fmt.Errorf("status version %d, want 3", s.Version)
		}
		return nil
	})
}

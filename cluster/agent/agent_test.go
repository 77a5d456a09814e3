package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/runtime/exit"
	"github.com/shoal-edge/shoal/runtime/supervise"
)

type fakeDesired struct {
	mu     sync.Mutex
	allocs []api.Allocation
	ch     chan struct{}
}

func newDesired(al ...api.Allocation) *fakeDesired {
	return &fakeDesired{allocs: al, ch: make(chan struct{})}
}
func (d *fakeDesired) Allocations() ([]api.Allocation, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]api.Allocation(nil), d.allocs...), nil
}
func (d *fakeDesired) Spec(name string, version uint64) (api.App, error) {
	return api.App{Name: name, Image: "img", Restart: api.RestartAlways, Version: version}, nil
}
func (d *fakeDesired) AppliedIndex() uint64 { return 1 }

func (d *fakeDesired) Changed() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}
func (d *fakeDesired) set(al ...api.Allocation) {
	d.mu.Lock()
	d.allocs = al
	close(d.ch)
	d.ch = make(chan struct{})
	d.mu.Unlock()
}

type fakeProc struct {
	name                     string
	stuck                    bool          // Stop fails, never exits (container in D state)
	grace                    chan struct{} // Stop waits for it (a container that ignores SIGTERM)
	once                     sync.Once
	done                     chan struct{}
	stopped, closed, deleted atomic.Bool
}

func newProc(name string) *fakeProc   { return &fakeProc{name: name, done: make(chan struct{})} }
func (p *fakeProc) Pid() int          { return 42 }
func (p *fakeProc) Wait() exit.Status { <-p.done; return exit.Status{Code: 0} }
func (p *fakeProc) end()              { p.once.Do(func() { close(p.done) }) }
func (p *fakeProc) Stop(time.Duration) error {
	p.stopped.Store(true)
	if p.grace != nil {
		<-p.grace
	}
	if p.stuck {
		return errors.New("still running after SIGKILL")
	}
	p.end()
	return nil
}
func (p *fakeProc) Delete() error {
	p.deleted.Store(true)
	if p.stuck {
		return errors.New("still running")
	}
	p.end()
	return nil
}
func (p *fakeProc) Close() error { p.closed.Store(true); p.end(); return nil }

type fakeRuntime struct {
	mu      sync.Mutex
	started []*fakeProc
	specs   []api.App // the spec of each start, in order
	block   bool      // Start blocks until ctx ends
	stuck   map[string]bool
	// graceFirst: the first container's Stop waits for it.
	graceFirst chan struct{}
	// noImage: HasImage says no, and Pull hangs until its context ends,
	// as it does on a registry that never answers.
	noImage bool
}

func (r *fakeRuntime) Start(ctx context.Context, in Instance) (supervise.Process, error) {
	if r.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	p := newProc(in.ID)
	p.stuck = r.stuck[in.Allocation.App]
	r.mu.Lock()
	if len(r.started) == 0 {
		p.grace = r.graceFirst
	}
	r.started = append(r.started, p)
	r.specs = append(r.specs, in.App)
	r.mu.Unlock()
	return p, nil
}
func (r *fakeRuntime) HasImage(string) bool { return !r.noImage }
func (r *fakeRuntime) Pull(ctx context.Context, ref string) error {
	if r.noImage {
		<-ctx.Done()
		return fmt.Errorf("pull %s: %w", ref, context.Cause(ctx))
	}
	return nil
}
func (r *fakeRuntime) n() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.started) }

// last returns the latest start's container and spec.
func (r *fakeRuntime) last() (*fakeProc, api.App) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.started) == 0 {
		return nil, api.App{}
	}
	return r.started[len(r.started)-1], r.specs[len(r.specs)-1]
}

// statusOf returns an instance's observed state.
func statusOf(a *Agent, name string) api.InstanceStatus {
	for _, s := range a.Status() {
		if s.Instance == name {
			return s
		}
	}
	return api.InstanceStatus{}
}

// Two containers for one instance survive a daemon killed while one
// replaced the other: the agent keeps the live one and removes the other,
// starting nothing new.
func TestAdoptKeepsTheLiveOfTwo(t *testing.T) {
	al := api.Allocation{App: "web", Index: 0, Version: 1, Node: "n1"}
	live := newProc("web.0.0aaa")
	old := newProc("web.0.ffff")
	old.end() // exited while the daemon was away
	rt := &fakeRuntime{}
	a, err := New(Config{Node: "n1", LogDir: t.TempDir(), Desired: newDesired(al), Runtime: rt,
		Adopted: []Adopted{{"web", 0, 1, live}, {"web", 0, 1, old}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	testutil.WaitFor(t, 5*time.Second, func() error {
		if s := statusOf(a, "web/0"); s.State != api.StateRunning || !old.deleted.Load() {
			return fmt.Errorf("state %q, old container deleted %v", s.State, old.deleted.Load())
		}
		return nil
	})
	cancel()
	<-done
	if live.stopped.Load() || !live.closed.Load() || rt.n() != 0 {
		t.Fatalf("live container: stopped %v, released at shutdown %v; new containers %d — want it kept, released, none new",
			live.stopped.Load(), live.closed.Load(), rt.n())
	}
}

// Shutdown does not wait for a start under way (an image unpack, a slow
// monitor): the start is given up.
func TestShutdownDuringStart(t *testing.T) {
	al := api.Allocation{App: "web", Index: 0, Version: 1, Node: "n1"}
	rt := &fakeRuntime{block: true}
	a, _ := New(Config{Node: "n1", LogDir: t.TempDir(), Desired: newDesired(al), Runtime: rt})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	testutil.WaitFor(t, 5*time.Second, func() error {
		if s := statusOf(a, "web/0"); s.State != "starting" {
			return fmt.Errorf("state %q, want starting", s.State)
		}
		return nil
	})
	cancel()
	testutil.WaitFor(t, 5*time.Second, func() error {
		select {
		case <-done:
			return nil
		default:
			return fmt.Errorf("Run still waiting for the start")
		}
	})
}

// A container that cannot be killed does not hold up the others: removing
// it and applying another app starts the other at once.
func TestStuckStopDoesNotBlockOthers(t *testing.T) {
	a0 := api.Allocation{App: "a", Index: 0, Version: 1, Node: "n1"}
	b0 := api.Allocation{App: "b", Index: 0, Version: 1, Node: "n1"}
	d := newDesired(a0)
	rt := &fakeRuntime{stuck: map[string]bool{"a": true}}
	a, _ := New(Config{Node: "n1", LogDir: t.TempDir(), Desired: d, Runtime: rt})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	testutil.WaitFor(t, 5*time.Second, func() error {
		if rt.n() != 1 {
			return fmt.Errorf("%d starts", rt.n())
		}
		return nil
	})
	d.set(b0) // rm a, apply b
	testutil.WaitFor(t, 5*time.Second, func() error {
		if s := statusOf(a, "b/0"); s.State != api.StateRunning {
			return fmt.Errorf("b is %q: stuck behind a's stop", s.State)
		}
		return nil
	})
}

// A pull that does not finish in PullTimeout is given up, shows in the
// instance's status, and is tried again.
func TestPullTimeout(t *testing.T) {
	al := api.Allocation{App: "web", Index: 0, Version: 1, Node: "n1"}
	rt := &fakeRuntime{noImage: true}
	a, _ := New(Config{Node: "n1", LogDir: t.TempDir(), Desired: newDesired(al), Runtime: rt, PullTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testutil.WaitFor(t, 5*time.Second, func() error {
		s := statusOf(a, "web/0")
		if s.State != api.StatePulling || !strings.Contains(s.Error, "pull img: timed out after 200ms (retrying in") {
			return fmt.Errorf("state %q, error %q", s.State, s.Error)
		}
		return nil
	})
}

// A held agent neither stops nor starts for a change of the desired state
// (a leaving node's instance keeps running while the leader moves it);
// Retire then stops every container, the adopted ones no allocation took
// included, and counts them.
func TestHoldThenRetire(t *testing.T) {
	web := api.Allocation{App: "web", Index: 0, Version: 1, Node: "n1"}
	db := api.Allocation{App: "db", Index: 0, Version: 1, Node: "n1"}
	orphan := newProc("gone.0.0aaa") // adopted, and no allocation names it
	d := newDesired(web)
	rt := &fakeRuntime{}
	a, err := New(Config{Node: "n1", LogDir: t.TempDir(), Desired: d, Runtime: rt,
		Adopted: []Adopted{{"gone", 0, 1, orphan}}})
	if err != nil {
		t.Fatal(err)
	}
	// The orphan stays adopted until the first reconcile: hold first.
	a.Hold()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	a.Release()
	testutil.WaitFor(t, 5*time.Second, func() error {
		if s := statusOf(a, "web/0"); s.State != api.StateRunning {
			return fmt.Errorf("web/0 is %q", s.State)
		}
		return nil
	})
	first, _ := rt.last()
	// The orphan went at the first reconcile; another comes back, as after
	// a restart, for Retire to find.
	orphan2 := newProc("gone.0.0bbb")
	a.mu.Lock()
	a.adopted["gone/0"] = Adopted{"gone", 0, 1, orphan2}
	a.mu.Unlock()

	a.Hold()
	d.set(db) // web moves away, db comes
	// A reconcile after the change (the loop's may run too, alike): once
	// it returns, a held agent has decided to do nothing.
	if err := a.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(a, "db/0").State; st != "" || statusOf(a, "web/0").State != api.StateRunning {
		t.Fatalf("held agent acted: db/0 is %q, web/0 %q", st, statusOf(a, "web/0").State)
	}
	if n := a.Retire(); n != 2 {
		t.Errorf("Retire stopped %d containers, want 2 (web and the adopted one)", n)
	}
	if !first.stopped.Load() || !orphan2.stopped.Load() || !orphan2.deleted.Load() {
		t.Errorf("after Retire: web stopped %v, adopted stopped %v deleted %v", first.stopped.Load(), orphan2.stopped.Load(), orphan2.deleted.Load())
	}
	if rt.n() != 1 || len(a.Status()) != 0 {
		t.Errorf("after Retire: %d starts, status %+v; want no new start and no instance", rt.n(), a.Status())
	}
}

// An instance taken out (a drain) whose container ends only after its
// grace, when the instance is back under the same name (uncordon), does
// not report its end over the new one: ps showed a running instance
// exited.
func TestStoppingInstanceDoesNotReportOverItsSuccessor(t *testing.T) {
	a0 := api.Allocation{App: "a", Index: 0, Version: 1, Node: "n1"}
	d := newDesired(a0)
	rt := &fakeRuntime{graceFirst: make(chan struct{})}
	a, _ := New(Config{Node: "n1", LogDir: t.TempDir(), Desired: d, Runtime: rt})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	running := func() error {
		if s := statusOf(a, "a/0"); s.State != api.StateRunning {
			return fmt.Errorf("a/0 is %q", s.State)
		}
		return nil
	}
	testutil.WaitFor(t, 5*time.Second, running)
	first, _ := rt.last()
	d.set() // drained: the container is asked to stop and takes its grace
	testutil.WaitFor(t, 5*time.Second, func() error {
		if !first.stopped.Load() {
			return errors.New("not asked to stop yet")
		}
		return nil
	})
	d.set(a0) // uncordoned: a new container under the same name
	testutil.WaitFor(t, 5*time.Second, func() error {
		if rt.n() != 2 {
			return fmt.Errorf("%d starts", rt.n())
		}
		return running()
	})
	close(rt.graceFirst) // the first container ends now
	a.bg.Wait()          // and its supervision with it
	if err := running(); err != nil {
		t.Fatalf("after the stopped container ended: %v, want the new one's running", err)
	}
}

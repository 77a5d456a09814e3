// Package agent owns the node-side reconciler: it reads the allocations the
// scheduler placed on this node from the local replica of the desired state,
// compares them with the instances it supervises, starts, replaces and stops
// containers to match, and keeps the observed status of each instance.
//
// It needs no quorum: it works from the local bbolt replica, so a node cut
// off from the cluster keeps running, restarting and reporting what it was
// last told to run.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/runtime/logs"
	"github.com/shoal-edge/shoal/runtime/supervise"
)

// Desired is the agent's read-only view of the replicated state.
type Desired interface {
	Allocations() ([]api.Allocation, error)
	// Spec is the app at the version an allocation names, which may be
	// older than its current spec: an instance runs exactly its
	// allocation's version until the scheduler moves it.
	Spec(app string, version uint64) (api.App, error)
	Changed() <-chan struct{}
	// AppliedIndex is 0 while the replica holds nothing yet (a new node,
	// or one whose state was dropped to rejoin): the agent then neither
	// starts nor stops anything, so that adopted containers outlive the
	// wait for the leader's state.
	AppliedIndex() uint64
}

// Config wires an agent.
type Config struct {
	Node    string // this node's name
	LogDir  string // instance logs: LogDir/<app>/<index>.log
	Desired Desired
	Runtime Runtime
	Logger  *slog.Logger
	// Grace is how long a stopped container gets between SIGTERM and SIGKILL.
	Grace time.Duration
	// Adopted are containers a previous daemon left running; the agent
	// takes over those still wanted and stops the others.
	Adopted []Adopted
	// Journal remembers instances that ended for good (restart: never,
	// or on-failure after a clean exit), so that a daemon restart or a
	// reboot does not run them again. Optional.
	Journal Journal
	// PullTimeout bounds each attempt to pull an instance's image; the
	// attempt then fails, shows in the instance's status, and is retried
	// with backoff. 0: no bound.
	PullTimeout time.Duration
	// Starts bounds the container starts under way at once
	// (DefaultStarts when 0); the others wait, restarts of instances that
	// ran on the node first.
	Starts int
}

// Journal is node-local memory of instances that ended for good.
type Journal interface {
	Finished(app string, index int, version uint64) (api.InstanceStatus, bool)
	SetFinished(st api.InstanceStatus, index int) error
	ForgetFinished(app string, index int) error
}

// Adopted is a running container found at start, with the allocation it
// was started for.
type Adopted struct {
	App     string
	Index   int
	Version uint64
	Process supervise.Process
}

// Agent reconciles allocations to containers.
type Agent struct {
	cfg Config
	log *slog.Logger

	// detach closes when the daemon shuts down: supervision ends and the
	// containers keep running for the next daemon to adopt.
	detach chan struct{}
	// bg counts stops running in the background.
	bg sync.WaitGroup
	// pace queues container starts.
	pace *pacer
	// stops spaces out the stops of containers (4 per start slot a second).
	stops *spacer
	// held: the agent no longer follows the desired state (the node is
	// leaving its cluster, whose state is no longer its own to follow);
	// the containers it supervises keep running, and restarting, as
	// they are until Retire or Release.
	held atomic.Bool
	poke chan struct{} // reconcile now (buffered)
	// reconciling is held by a reconcile and by Retire: no start begins
	// after Retire took the instances.
	reconciling sync.Mutex

	mu        sync.Mutex // guards following
	status    map[string]api.InstanceStatus
	instances map[string]*instance
	adopted   map[string]Adopted // by instance name, until the first reconcile
}

type instance struct {
	alloc  api.Allocation
	cancel context.CancelFunc
	done   chan struct{}
	watch  *watch
}

// New returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Desired == nil || cfg.Runtime == nil || cfg.Node == "" || cfg.LogDir == "" {
		return nil, errors.New("agent: Node, LogDir, Desired and Runtime are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Grace == 0 {
		cfg.Grace = 10 * time.Second
	}
	if cfg.Starts == 0 {
		cfg.Starts = DefaultStarts()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("component", "agent"), detach: make(chan struct{}), poke: make(chan struct{}, 1), pace: newPacer(cfg.Starts), stops: &spacer{every: time.Second / time.Duration(4*max(1, cfg.Starts))},
		status: map[string]api.InstanceStatus{}, instances: map[string]*instance{}, adopted: map[string]Adopted{}}
	for _, ad := range cfg.Adopted {
		name := api.InstanceName(ad.App, ad.Index)
		prev, dup := a.adopted[name]
		if !dup {
			a.adopted[name] = ad
			continue
		}
		// Two containers for one instance (the daemon died while one
		// replaced the other): keep the live, newer one.
		keep, drop := prev, ad
		if better(ad, prev) {
			keep, drop = ad, prev
		}
		a.adopted[name] = keep
		a.log.Warn("two containers for one instance: stopping one", "instance", name, "pid", drop.Process.Pid())
		a.background(func() { a.discard(drop.Process) })
	}
	return a, nil
}

// Run reconciles until ctx ends, then lets go of its containers without
// stopping them: they outlive the daemon and the next one adopts them.
func (a *Agent) Run(ctx context.Context) error {
	defer a.detachAll()
	first := true
	for {
		changed := a.cfg.Desired.Changed()
		if a.cfg.Desired.AppliedIndex() == 0 || a.held.Load() {
			// Nothing to go by (yet).
		} else if err := a.reconcile(ctx); err != nil {
			a.log.Error("reconcile", "err", err)
		} else if first {
			first = false
			a.dropUnwantedAdopted()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-a.poke:
		}
	}
}

// changeKind is what a reconcile does to one instance.
type changeKind string

const (
	changeStart   changeKind = "start"   // run an allocation that nothing runs here
	changeStop    changeKind = "stop"    // an instance no allocation here wants
	changeReplace changeKind = "replace" // the allocation names another version
)

// change is one step of a reconcile: start, stop or replace an instance.
type change struct {
	kind  changeKind
	alloc api.Allocation
}

// diff compares the allocations placed on this node with the instances
// running; it is pure so the decision is tested without containers.
func diff(node string, desired []api.Allocation, running map[string]api.Allocation) []change {
	var out []change
	want := map[string]api.Allocation{}
	for _, al := range desired {
		if al.Node == node {
			want[al.Instance()] = al
		}
	}
	for _, name := range slices.Sorted(maps.Keys(running)) {
		if _, ok := want[name]; !ok {
			out = append(out, change{changeStop, running[name]})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		al := want[name]
		cur, ok := running[name]
		switch {
		case !ok:
			out = append(out, change{changeStart, al})
		case cur.Version != al.Version:
			out = append(out, change{changeReplace, al})
		}
	}
	return out
}

func (a *Agent) reconcile(ctx context.Context) error {
	a.reconciling.Lock()
	defer a.reconciling.Unlock()
	if a.held.Load() {
		return nil
	}
	allocs, err := a.cfg.Desired.Allocations()
	if err != nil {
		return fmt.Errorf("read allocations: %w", err)
	}
	a.mu.Lock()
	running := map[string]api.Allocation{}
	for name, in := range a.instances {
		running[name] = in.alloc
	}
	a.mu.Unlock()
	// Stops run in the background (a container may take its whole grace
	// period, or hang): one slow instance never holds up the others.
	for _, c := range diff(a.cfg.Node, allocs, running) {
		name := c.alloc.Instance()
		switch c.kind {
		case changeStop:
			a.log.Info("stop instance", "instance", name)
			prev := a.take(name)
			a.background(func() {
				prev.kill()
				a.forget(c.alloc)
			})
		case changeReplace:
			a.log.Info("replace instance", "instance", name, "version", c.alloc.Version)
			a.start(ctx, c.alloc, a.take(name))
		case changeStart:
			a.log.Info("start instance", "instance", name, "version", c.alloc.Version)
			a.start(ctx, c.alloc, nil)
		}
	}
	return nil
}

// background runs f in a goroutine that shutdown waits for.
func (a *Agent) background(f func()) {
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		f()
	}()
}

// take removes an instance from the running set and returns it.
func (a *Agent) take(name string) *instance {
	a.mu.Lock()
	defer a.mu.Unlock()
	in := a.instances[name]
	delete(a.instances, name)
	return in
}

// running says whether the instance has a live container.
func (in *instance) running() bool {
	in.watch.mu.Lock()
	p := in.watch.proc
	in.watch.mu.Unlock()
	return p != nil && alive(p)
}

// kill stops the instance's container and waits for its supervision to end.
func (in *instance) kill() {
	if in == nil {
		return
	}
	in.cancel()
	<-in.done
}

// start supervises a new instance; prev, the instance it replaces, is
// stopped first, in the new instance's goroutine.
func (a *Agent) start(ctx context.Context, al api.Allocation, prev *instance) {
	app, err := a.cfg.Desired.Spec(al.App, al.Version)
	if err != nil {
		a.background(prev.kill)
		a.setStatus(al, func(s *api.InstanceStatus) { s.State, s.Error = api.StateFailed, err.Error() })
		return
	}
	adopt := a.takeAdopted(al)
	// Not derived from the daemon's ctx: ending the daemon detaches,
	// only cancel kills.
	ictx, cancel := context.WithCancel(context.Background())
	in := &instance{alloc: al, cancel: cancel, done: make(chan struct{}), watch: &watch{a: a, al: al, app: app}}
	a.mu.Lock()
	a.instances[al.Instance()] = in
	a.mu.Unlock()
	a.setStatus(al, func(s *api.InstanceStatus) {
		*s = api.InstanceStatus{State: api.StatePending}
	})
	go func() {
		defer close(in.done)
		prev.kill()
		if adopt == nil && a.cfg.Journal != nil {
			if st, ok := a.cfg.Journal.Finished(al.App, al.Index, al.Version); ok {
				a.log.Info("instance ended for good before: not starting it again", "instance", al.Instance(), "exit_code", st.ExitCode)
				a.setStatus(al, func(s *api.InstanceStatus) { *s = st })
				return
			}
		}
		a.supervise(ictx, in.watch, adopt)
	}()
}

// takeAdopted returns the adopted container of this allocation, if it runs
// the same version; an adopted container of another version is stopped.
func (a *Agent) takeAdopted(al api.Allocation) supervise.Process {
	a.mu.Lock()
	ad, ok := a.adopted[al.Instance()]
	delete(a.adopted, al.Instance())
	a.mu.Unlock()
	if !ok {
		return nil
	}
	if ad.Version == al.Version {
		a.log.Info("adopted running container", "instance", al.Instance(), "pid", ad.Process.Pid())
		return ad.Process
	}
	a.log.Info("stop adopted container of an old version", "instance", al.Instance(), "version", ad.Version)
	a.background(func() { a.discard(ad.Process) })
	return nil
}

// dropUnwantedAdopted stops containers no allocation wants any more.
func (a *Agent) dropUnwantedAdopted() {
	a.mu.Lock()
	left := a.adopted
	a.adopted = map[string]Adopted{}
	a.mu.Unlock()
	for name, ad := range left {
		a.log.Info("stop adopted container no longer wanted", "instance", name)
		a.background(func() {
			a.discard(ad.Process)
			a.forget(api.Allocation{App: ad.App, Index: ad.Index})
		})
	}
}

func (a *Agent) discard(p supervise.Process) {
	if err := p.Stop(a.cfg.Grace); err != nil {
		a.log.Warn("stop container", "err", err)
	}
	p.Wait()
	if err := p.Delete(); err != nil {
		a.log.Warn("delete container", "err", err)
	}
}

// Hold stops following the desired state: nothing is started or stopped
// for a change of it until Release. The node holds its agent while it
// leaves the cluster, so that an instance the leader moves keeps running
// here until it runs on its new node.
func (a *Agent) Hold() { a.held.Store(true) }

// Release follows the desired state again (a leave that failed).
func (a *Agent) Release() {
	a.held.Store(false)
	select {
	case a.poke <- struct{}{}:
	default:
	}
}

// Retire stops every container of the node, the adopted ones no
// allocation took included, and waits until they are gone (their mounts
// and cgroups with them); the agent follows the desired state no more.
// It returns how many containers it stopped. The node retires its agent
// when it is out of its cluster for good: nothing would manage them.
func (a *Agent) Retire() int {
	a.Hold()
	a.reconciling.Lock()
	defer a.reconciling.Unlock()
	a.mu.Lock()
	ins := a.instances
	a.instances = map[string]*instance{}
	adopted := a.adopted
	a.adopted = map[string]Adopted{}
	a.mu.Unlock()
	var stopped atomic.Int64
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Go(func() {
			if in.running() {
				stopped.Add(1)
			}
			in.kill()
			a.forget(in.alloc)
		})
	}
	for _, ad := range adopted {
		wg.Go(func() {
			stopped.Add(1)
			a.discard(ad.Process)
			a.forget(api.Allocation{App: ad.App, Index: ad.Index})
		})
	}
	wg.Wait()
	a.bg.Wait() // stops already under way
	return int(stopped.Load())
}

// detachAll ends every supervision loop, leaving the containers running,
// and waits for the stops already under way.
func (a *Agent) detachAll() {
	close(a.detach)
	a.mu.Lock()
	ins := slices.Collect(maps.Values(a.instances))
	a.mu.Unlock()
	for _, in := range ins {
		<-in.done
		in.cancel()
	}
	a.bg.Wait()
}

// forget drops the status and log of an instance that is no longer wanted:
// nothing of a removed app stays on the node.
func (a *Agent) forget(al api.Allocation) {
	a.mu.Lock()
	if a.instances[al.Instance()] != nil {
		// Started again meanwhile (rm then apply): its status and log
		// are the new instance's.
		a.mu.Unlock()
		return
	}
	delete(a.status, al.Instance())
	a.mu.Unlock()
	if a.cfg.Journal != nil {
		if err := a.cfg.Journal.ForgetFinished(al.App, al.Index); err != nil {
			a.log.Warn("forget finished instance", "instance", al.Instance(), "err", err)
		}
	}
	logs.Remove(a.LogPath(al.App, al.Index))
	os.Remove(filepath.Join(a.cfg.LogDir, al.App)) // only if empty
}

// current reports whether w watches the instance that runs under its name
// now, rather than one taken out to be stopped.
func (a *Agent) current(w *watch) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	in := a.instances[w.al.Instance()]
	return in != nil && in.watch == w
}

func (a *Agent) setStatus(al api.Allocation, f func(*api.InstanceStatus)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.status[al.Instance()]
	f(&s)
	s.App, s.Instance, s.Node, s.Version = al.App, al.Instance(), a.cfg.Node, al.Version
	a.status[al.Instance()] = s
}

// Status returns the observed state of every instance on this node.
func (a *Agent) Status() []api.InstanceStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]api.InstanceStatus, 0, len(a.status))
	for _, name := range slices.Sorted(maps.Keys(a.status)) {
		out = append(out, a.status[name])
	}
	return out
}

// Process returns the running container of an instance, if any.
func (a *Agent) Process(app string, index int) (supervise.Process, bool) {
	a.mu.Lock()
	in := a.instances[api.InstanceName(app, index)]
	st := a.status[api.InstanceName(app, index)]
	a.mu.Unlock()
	if in == nil || (st.State != api.StateRunning && st.State != api.StateUnhealthy) {
		return nil, false
	}
	in.watch.mu.Lock()
	defer in.watch.mu.Unlock()
	return in.watch.proc, in.watch.proc != nil
}

// LogPath is where an instance's output is written.
func (a *Agent) LogPath(app string, index int) string {
	return filepath.Join(a.cfg.LogDir, app, fmt.Sprintf("%d.log", index))
}

// better says whether adopted container x is a better one to keep than y:
// running beats exited, then the newer start wins.
func better(x, y Adopted) bool {
	xl, yl := alive(x.Process), alive(y.Process)
	if xl != yl {
		return xl
	}
	return startedAt(x.Process).After(startedAt(y.Process))
}

func alive(p supervise.Process) bool {
	d, ok := p.(interface{ Done() <-chan struct{} })
	if !ok {
		return true
	}
	select {
	case <-d.Done():
		return false
	default:
		return true
	}
}

func startedAt(p supervise.Process) time.Time {
	if s, ok := p.(interface{ StartedAt() time.Time }); ok {
		return s.StartedAt()
	}
	return time.Time{}
}

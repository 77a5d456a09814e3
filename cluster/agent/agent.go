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
	"time"

	"github.com/shoal-edge/shoal/api"
)

// Desired is the agent's read-only view of the replicated state.
type Desired interface {
	Allocations() ([]api.Allocation, error)
	App(name string) (api.App, error)
	Changed() <-chan struct{}
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
}

// Agent reconciles allocations to containers.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex // guards following
	status    map[string]api.InstanceStatus
	instances map[string]*instance
}

type instance struct {
	alloc  api.Allocation
	cancel context.CancelFunc
	done   chan struct{}
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
	return &Agent{cfg: cfg, log: cfg.Logger.With("component", "agent"),
		status: map[string]api.InstanceStatus{}, instances: map[string]*instance{}}, nil
}

// Run reconciles until ctx ends, then stops every instance it started.
func (a *Agent) Run(ctx context.Context) error {
	defer a.stopAll()
	for {
		changed := a.cfg.Desired.Changed()
		if err := a.reconcile(ctx); err != nil {
			a.log.Error("reconcile", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// change is one step of a reconcile: start, stop or replace an instance.
type change struct {
	kind  string // "start" | "stop" | "replace"
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
			out = append(out, change{"stop", running[name]})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		al := want[name]
		cur, ok := running[name]
		switch {
		case !ok:
			out = append(out, change{"start", al})
		case cur.Version != al.Version:
			out = append(out, change{"replace", al})
		}
	}
	return out
}

func (a *Agent) reconcile(ctx context.Context) error {
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
	for _, c := range diff(a.cfg.Node, allocs, running) {
		name := c.alloc.Instance()
		switch c.kind {
		case "stop":
			a.log.Info("stop instance", "instance", name)
			a.stop(name)
			a.forget(c.alloc)
		case "replace":
			a.log.Info("replace instance", "instance", name, "version", c.alloc.Version)
			a.stop(name)
			a.start(ctx, c.alloc)
		case "start":
			a.log.Info("start instance", "instance", name, "version", c.alloc.Version)
			a.start(ctx, c.alloc)
		}
	}
	return nil
}

func (a *Agent) start(ctx context.Context, al api.Allocation) {
	app, err := a.cfg.Desired.App(al.App)
	if err != nil {
		a.setStatus(al, func(s *api.InstanceStatus) { s.State, s.Error = api.StateFailed, err.Error() })
		return
	}
	ictx, cancel := context.WithCancel(ctx)
	in := &instance{alloc: al, cancel: cancel, done: make(chan struct{})}
	a.mu.Lock()
	a.instances[al.Instance()] = in
	a.mu.Unlock()
	a.setStatus(al, func(s *api.InstanceStatus) {
		*s = api.InstanceStatus{State: api.StatePending}
	})
	go func() {
		defer close(in.done)
		a.supervise(ictx, al, app)
	}()
}

func (a *Agent) stop(name string) {
	a.mu.Lock()
	in := a.instances[name]
	delete(a.instances, name)
	a.mu.Unlock()
	if in == nil {
		return
	}
	in.cancel()
	<-in.done
}

func (a *Agent) stopAll() {
	a.mu.Lock()
	names := slices.Collect(maps.Keys(a.instances))
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() { defer wg.Done(); a.stop(n) }()
	}
	wg.Wait()
}

// forget drops the status and log of an instance that is no longer wanted:
// nothing of a removed app stays on the node.
func (a *Agent) forget(al api.Allocation) {
	a.mu.Lock()
	delete(a.status, al.Instance())
	a.mu.Unlock()
	os.Remove(a.LogPath(al.App, al.Index))
	os.Remove(filepath.Join(a.cfg.LogDir, al.App)) // only if empty
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

// LogPath is where an instance's output is written.
func (a *Agent) LogPath(app string, index int) string {
	return filepath.Join(a.cfg.LogDir, app, fmt.Sprintf("%d.log", index))
}

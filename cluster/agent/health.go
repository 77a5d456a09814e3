package agent

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/runtime/health"
	"github.com/shoal-edge/shoal/runtime/supervise"
)

// watch follows one instance's container across restarts: it remembers the
// current process and runs the app's health check against it. An unhealthy
// container is stopped so that the restart policy decides what happens.
type watch struct {
	a   *Agent
	al  api.Allocation
	app api.App

	mu     sync.Mutex // guards following
	proc   supervise.Process
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ran says whether a container of this instance has run on the node.
func (w *watch) ran() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.proc != nil
}

func (w *watch) started(p supervise.Process) {
	w.mu.Lock()
	w.proc = p
	w.mu.Unlock()
}

// event is called by the supervision loop on every state change.
func (w *watch) event(ev supervise.Event) {
	// An instance being stopped (drained, replaced) may end after its
	// grace, when another has taken its name: its end is not news of
	// that one.
	if w.a.current(w) {
		w.a.record(w.al, ev)
	}
	switch ev.State {
	case supervise.Running:
		w.startHealth(ev.Pid)
	default:
		w.stopHealth()
	}
}

func (w *watch) check() (health.Check, bool) {
	h := w.app.Health
	if h == nil {
		return health.Check{}, false
	}
	return health.Check{HTTP: h.HTTP, TCP: h.TCP, Exec: h.Exec, Interval: h.Interval.D(), Timeout: h.Timeout.D(),
		StartPeriod: h.StartPeriod.D(), Retries: h.Retries}, true
}

func (w *watch) startHealth(pid int) {
	c, ok := w.check()
	if !ok {
		return
	}
	w.stopHealth()
	// While starts queue, the node is as busy as it may be: a check
	// that fails then (or cannot be run in time) is no reason to
	// restart a container, which would only queue another start.
	t := health.Target{Busy: w.a.pace.busySince}
	if w.app.Network != api.NetworkHost {
		t.NetNS = fmt.Sprintf("/proc/%d/ns/net", pid)
	}
	if ex, ok := w.a.cfg.Runtime.(Execer); ok {
		w.mu.Lock()
		proc := w.proc
		w.mu.Unlock()
		t.Exec = func(ctx context.Context, args []string, out io.Writer) (int, error) {
			return ex.ExecCheck(ctx, proc, args, out)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.mu.Lock()
	w.cancel = cancel
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		health.Run(ctx, c, t, nil, func(st health.Status) { w.healthChanged(ctx, st) })
	}()
}

func (w *watch) healthChanged(ctx context.Context, st health.Status) {
	if ctx.Err() != nil {
		return
	}
	switch st.State {
	case health.Healthy:
		w.a.setStatus(w.al, func(s *api.InstanceStatus) { s.State, s.Health = api.StateRunning, "" })
	case health.Unhealthy:
		w.a.log.Warn("instance unhealthy", "instance", w.al.Instance(), "failures", st.Failures, "output", st.LastOutput)
		w.a.setStatus(w.al, func(s *api.InstanceStatus) { s.State, s.Health = api.StateUnhealthy, st.LastOutput })
		if w.app.Restart == api.RestartNever {
			return
		}
		w.mu.Lock()
		proc := w.proc
		w.mu.Unlock()
		if proc == nil {
			return
		}
		select {
		case <-w.a.detach:
			return // the daemon is going away: leave the container be
		default:
		}
		// Stopping ends this run; the loop restarts it per policy.
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			proc.Stop(w.a.cfg.Grace)
		}()
	}
}

func (w *watch) stopHealth() {
	w.mu.Lock()
	cancel := w.cancel
	w.cancel = nil
	w.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	w.wg.Wait()
}

// Execer is implemented by runtimes that can run a command inside a
// running container (exec health checks). The command's combined output
// goes to out as it comes, never into a buffer of the runtime's own: out
// bounds it.
type Execer interface {
	ExecCheck(ctx context.Context, p supervise.Process, args []string, out io.Writer) (code int, err error)
}

package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/runtime/supervise"
)

// Instance is what the runtime needs to start one container of an app.
type Instance struct {
	ID         string // unique per container start
	Hostname   string
	App        api.App
	Allocation api.Allocation
	LogPath    string
}

// Runtime starts containers for the agent; the node wires it to the image
// store and the Linux runtime.
type Runtime interface {
	Start(ctx context.Context, in Instance) (supervise.Process, error)
	// HasImage reports whether ref is in the node's store; Pull fetches it.
	HasImage(ref string) bool
	Pull(ctx context.Context, ref string) error
}

// supervise runs one instance until ctx ends or its restart policy gives up.
func (a *Agent) supervise(ctx context.Context, w *watch, adopt supervise.Process) {
	al, app := w.al, w.app
	if adopt == nil && !a.ensureImage(ctx, al, app.Image) {
		return
	}
	if adopt != nil {
		w.started(adopt)
	}
	defer w.stopHealth()
	cfg := supervise.Config{
		Start: func(ctx context.Context) (supervise.Process, error) {
			// A start under way when the daemon shuts down is given up
			// (and cleaned up): shutdown does not wait for an unpack.
			ctx, cancel := a.untilDetach(ctx)
			defer cancel()
			pri := first
			if w.ran() {
				pri = restart
			}
			release, err := a.pace.acquire(ctx, pri)
			if err != nil {
				return nil, err
			}
			defer release()
			p, err := a.cfg.Runtime.Start(ctx, Instance{
				ID:         containerID(al),
				Hostname:   fmt.Sprintf("%s-%d", al.App, al.Index),
				App:        app,
				Allocation: al,
				LogPath:    a.LogPath(al.App, al.Index),
			})
			if err == nil {
				w.started(p)
			}
			return p, err
		},
		Adopt:  adopt,
		Detach: a.detach,
		// Every start gets a new container id (containerID).
		OverlapDelete: true,
		BeforeStop:    a.stops.wait,
		Policy:        supervise.Policy{Restart: restartOf(app.Restart)},
		Grace:         a.cfg.Grace,
		OnEvent:       w.event,
		Logger:        a.log.With("instance", al.Instance()),
	}
	if a.cfg.Journal != nil {
		// The restart policy let it end: remember, across restarts.
		cfg.OnEnd = func() {
			a.mu.Lock()
			st := a.status[al.Instance()]
			a.mu.Unlock()
			if err := a.cfg.Journal.SetFinished(st, al.Index); err != nil {
				a.log.Warn("record finished instance", "instance", al.Instance(), "err", err)
			}
		}
	}
	if err := supervise.Run(ctx, cfg); err != nil {
		a.log.Error("supervise", "instance", al.Instance(), "err", err)
	}
}

func (a *Agent) record(al api.Allocation, ev supervise.Event) {
	a.setStatus(al, func(s *api.InstanceStatus) {
		s.State = stateOf(ev.State)
		s.PID = ev.Pid
		s.Restarts = ev.Restarts
		s.ExitCode = ev.ExitCode
		s.OOMKilled = ev.OOMKilled
		if !ev.StartedAt.IsZero() {
			s.StartedAt = ev.StartedAt
		}
		s.Error, s.Health = "", ""
		if ev.Err != nil {
			s.Error = ev.Err.Error()
		}
		if ev.State != supervise.Running {
			s.PID = 0
		}
	})
	if ev.Err != nil {
		a.log.Warn("instance", "instance", al.Instance(), "state", ev.State, "err", ev.Err)
	} else {
		a.log.Info("instance", "instance", al.Instance(), "state", ev.State, "pid", ev.Pid, "exit_code", ev.ExitCode, "restarts", ev.Restarts)
	}
}

// containerID is unique per start so that a container being torn down never
// collides with its successor.
func containerID(al api.Allocation) string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s.%d.%s", al.App, al.Index, hex.EncodeToString(b[:]))
}

// ensureImage pulls a missing image, retrying with backoff while the
// registry is unreachable (flaky links are the normal case), and reports
// the instance as pulling meanwhile.
func (a *Agent) ensureImage(ctx context.Context, al api.Allocation, ref string) bool {
	// A daemon shutting down does not wait for a registry.
	ctx, cancel := a.untilDetach(ctx)
	defer cancel()
	delay := time.Second
	for !a.cfg.Runtime.HasImage(ref) {
		a.setStatus(al, func(s *api.InstanceStatus) { s.State, s.Error = api.StatePulling, "" })
		err := a.pull(ctx, ref)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		a.log.Warn("pull image", "instance", al.Instance(), "image", ref, "err", err, "retry_in", delay)
		a.setStatus(al, func(s *api.InstanceStatus) {
			// The runtime's error names the image already.
			s.State, s.Error = api.StatePulling, fmt.Sprintf("%v (retrying in %v)", err, delay)
		})
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Minute)
	}
	return true
}

// pull makes one attempt to pull ref, within the configured time.
func (a *Agent) pull(ctx context.Context, ref string) error {
	if d := a.cfg.PullTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d, fmt.Errorf("timed out after %s", d))
		defer cancel()
	}
	return a.cfg.Runtime.Pull(ctx, ref)
}

// untilDetach returns a context that also ends when the daemon shuts down.
func (a *Agent) untilDetach(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-a.detach:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/runtime/supervise"
)

// Instance is what the runtime needs to start one container of an app.
type Instance struct {
	ID       string // unique per container start
	Hostname string
	App      api.App
	LogPath  string
}

// Runtime starts containers for the agent; the node wires it to the image
// store and the Linux runtime.
type Runtime interface {
	Start(ctx context.Context, in Instance) (supervise.Process, error)
}

// supervise runs one instance until ctx ends or its restart policy gives up.
func (a *Agent) supervise(ctx context.Context, al api.Allocation, app api.App) {
	cfg := supervise.Config{
		Start: func(ctx context.Context) (supervise.Process, error) {
			return a.cfg.Runtime.Start(ctx, Instance{
				ID:       containerID(al),
				Hostname: fmt.Sprintf("%s-%d", al.App, al.Index),
				App:      app,
				LogPath:  a.LogPath(al.App, al.Index),
			})
		},
		Policy:  supervise.Policy{Restart: app.Restart},
		Grace:   a.cfg.Grace,
		OnEvent: func(ev supervise.Event) { a.record(al, ev) },
		Logger:  a.log.With("instance", al.Instance()),
	}
	if err := supervise.Run(ctx, cfg); err != nil {
		a.log.Error("supervise", "instance", al.Instance(), "err", err)
	}
}

func (a *Agent) record(al api.Allocation, ev supervise.Event) {
	a.setStatus(al, func(s *api.InstanceStatus) {
		s.State = ev.State
		s.PID = ev.Pid
		s.Restarts = ev.Restarts
		s.ExitCode = ev.ExitCode
		s.OOMKilled = ev.OOMKilled
		if !ev.StartedAt.IsZero() {
			s.StartedAt = ev.StartedAt
		}
		s.Error = ""
		if ev.Err != nil {
			s.Error = ev.Err.Error()
		}
		if ev.State != api.StateRunning {
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

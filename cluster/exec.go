package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/agent"
	"github.com/shoal-edge/shoal/cluster/apiserver"
	"github.com/shoal-edge/shoal/runtime/exit"
	"github.com/shoal-edge/shoal/runtime/linux"
	"github.com/shoal-edge/shoal/runtime/monitor"
	"github.com/shoal-edge/shoal/runtime/supervise"
	"github.com/shoal-edge/shoal/store"
)

// execBackend answers `shoal exec` (apiserver.Execer) for the instances
// this node runs.
type execBackend struct {
	node    string // this node's name, in errors
	running runningInstances
	apps    appReader
	rt      instanceExec
}

// runningInstances finds the process of an instance this node runs (the
// agent).
type runningInstances interface {
	Process(app string, index int) (supervise.Process, bool)
}

// appReader reads an app's current spec from the desired state.
type appReader interface {
	App(name string) (api.App, error)
}

// instanceExec runs a process in an instance's container (the node
// runtime).
type instanceExec interface {
	exec(ctx context.Context, p supervise.Process, proc linux.Process) (exit.Status, error)
}

var (
	_ apiserver.Execer = (*execBackend)(nil)
	_ runningInstances = (*agent.Agent)(nil)
	_ appReader        = (*store.Store)(nil)
	_ instanceExec     = (*nodeRuntime)(nil)
)

func newExecBackend(node string, running runningInstances, apps appReader, rt instanceExec) *execBackend {
	return &execBackend{node: node, running: running, apps: apps, rt: rt}
}

// Exec runs a command in a running instance on this node.
func (b *execBackend) Exec(ctx context.Context, req api.ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan api.TermSize) (int, error) {
	p, ok := b.running.Process(req.App, req.Index)
	if !ok {
		if _, err := b.apps.App(req.App); err != nil {
			return -1, err
		}
		return -1, fmt.Errorf("instance %s is not running on node %s: %w", api.InstanceName(req.App, req.Index), b.node, api.ErrNotFound)
	}
	var rs chan linux.TermSize
	if resize != nil {
		rs = make(chan linux.TermSize, 1)
		go func() {
			defer close(rs)
			for {
				select {
				case sz, ok := <-resize:
					if !ok {
						return
					}
					select {
					case rs <- linux.TermSize{Rows: sz.Rows, Cols: sz.Cols}:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	ex, err := b.rt.exec(ctx, p, linux.Process{Args: req.Command, Env: req.Env, TTY: req.TTY,
		Stdin: stdin, Stdout: stdout, Stderr: stderr, Resize: rs})
	if err != nil && ex.Code < 0 {
		return -1, err
	}
	// A program that did not start (not found, not executable) exits 126
	// or 127 and prints nothing of its own: say why, as a shell would.
	var ie *linux.InitError
	if errors.As(err, &ie) {
		w := stderr
		if w == nil || req.TTY {
			w = stdout
		}
		if w != nil {
			fmt.Fprintf(w, "shoal exec: %v\n", ie)
		}
	}
	return ex.Code, nil
}

// exec runs a process in the container of an instance this node runs.
// The code is -1 when the process did not run.
func (c *nodeRuntime) exec(ctx context.Context, p supervise.Process, proc linux.Process) (exit.Status, error) {
	h, ok := p.(*monitor.Handle)
	if !ok {
		return exit.Status{Code: -1}, fmt.Errorf("exec: container of an unexpected kind %T", p)
	}
	ctr, err := c.rt.Attach(h.Spec().Spec, h.Pid())
	if err != nil {
		return exit.Status{Code: -1}, err
	}
	return c.rt.Exec(ctx, ctr, proc)
}

// ExecCheck runs an exec health check in the instance's container; out
// receives its output as it comes and decides how much of it to keep.
func (c *nodeRuntime) ExecCheck(ctx context.Context, p supervise.Process, args []string, out io.Writer) (int, error) {
	ex, err := c.exec(ctx, p, linux.Process{Args: args, Stdout: out, Stderr: out})
	if err != nil {
		return -1, err
	}
	return ex.Code, nil
}

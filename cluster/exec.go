package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/runtime/linux"
	"github.com/shoal-edge/shoal/runtime/monitor"
	"github.com/shoal-edge/shoal/runtime/supervise"
)

// Exec runs a command in a running instance on this node.
func (n *Node) Exec(ctx context.Context, req api.ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan api.TermSize) (int, error) {
	p, ok := n.agent.Process(req.App, req.Index)
	if !ok {
		if _, err := n.store.App(req.App); err != nil {
			return -1, err
		}
		return -1, fmt.Errorf("instance %s is not running on node %s: %w", api.InstanceName(req.App, req.Index), n.id.Name, api.ErrNotFound)
	}
	c, err := n.attach(p)
	if err != nil {
		return -1, err
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
	ex, err := n.rt.Exec(ctx, c, linux.Process{Args: req.Command, Env: req.Env, TTY: req.TTY,
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

// attach finds the Linux runtime's view of a monitored container.
func (n *Node) attach(p supervise.Process) (*linux.Container, error) {
	h, ok := p.(*monitor.Handle)
	if !ok {
		return nil, fmt.Errorf("exec: container of an unexpected kind %T", p)
	}
	return n.rt.Attach(h.Spec().Spec, h.Pid())
}

// ExecCheck runs an exec health check in the instance's container; out
// receives its output as it comes and decides how much of it to keep.
func (ra runtimeAdapter) ExecCheck(ctx context.Context, p supervise.Process, args []string, out io.Writer) (int, error) {
	c, err := ra.n.attach(p)
	if err != nil {
		return -1, err
	}
	ex, err := ra.n.rt.Exec(ctx, c, linux.Process{Args: args, Stdout: out, Stderr: out})
	if err != nil {
		return -1, err
	}
	return ex.Code, nil
}

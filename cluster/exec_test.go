package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/runtime/exit"
	"github.com/shoal-edge/shoal/runtime/linux"
	"github.com/shoal-edge/shoal/runtime/supervise"
)

// oneInstance runs web/0 only; its process is never looked into.
type oneInstance struct{}

func (oneInstance) Process(app string, index int) (supervise.Process, bool) {
	return nil, app == "web" && index == 0
}

type knownApps []string

func (k knownApps) App(name string) (api.App, error) {
	for _, a := range k {
		if a == name {
			return api.App{Name: a}, nil
		}
	}
	return api.App{}, fmt.Errorf("app %s: %w", name, api.ErrNotFound)
}

// scriptedExec answers an exec with a given status and error, after
// taking one terminal size from the process's resize channel.
type scriptedExec struct {
	status exit.Status
	err    error
	size   linux.TermSize
}

func (s *scriptedExec) exec(ctx context.Context, _ supervise.Process, proc linux.Process) (exit.Status, error) {
	if proc.Resize != nil {
		select {
		case s.size = <-proc.Resize:
		case <-time.After(10 * time.Second):
		}
	}
	return s.status, s.err
}

// The exec backend alone: an instance this node does not run is not
// found, naming it and the node (or the app, when there is none); a
// program that did not start says why, as a shell would; terminal sizes
// go through to the runtime.
func TestExecBackendAlone(t *testing.T) {
	ctx := context.Background()
	rt := &scriptedExec{status: exit.Status{Code: 3}}
	b := newExecBackend("edge-1", oneInstance{}, knownApps{"web"}, rt)

	_, err := b.Exec(ctx, api.ExecRequest{App: "web", Index: 1, Command: []string{"sh"}}, nil, nil, nil, nil)
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "instance web/1 is not running on node edge-1") {
		t.Errorf("exec in an instance not here: %v", err)
	}
	_, err = b.Exec(ctx, api.ExecRequest{App: "db", Index: 0, Command: []string{"sh"}}, nil, nil, nil, nil)
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "app db") {
		t.Errorf("exec in an unknown app: %v", err)
	}

	resize := make(chan api.TermSize, 1)
	resize <- api.TermSize{Rows: 40, Cols: 120}
	code, err := b.Exec(ctx, api.ExecRequest{App: "web", Index: 0, Command: []string{"sh"}, TTY: true}, nil, nil, nil, resize)
	if err != nil || code != 3 {
		t.Errorf("exec = %d, %v; want 3", code, err)
	}
	if rt.size != (linux.TermSize{Rows: 40, Cols: 120}) {
		t.Errorf("the runtime got terminal size %+v", rt.size)
	}

	rt.status, rt.err = exit.Status{Code: 127}, &linux.InitError{Msg: `exec "nosuchcmd": executable file not found in $PATH`}
	var stderr bytes.Buffer
	code, err = b.Exec(ctx, api.ExecRequest{App: "web", Index: 0, Command: []string{"nosuchcmd"}}, nil, nil, &stderr, nil)
	if err != nil || code != 127 {
		t.Errorf("exec of a missing program = %d, %v; want 127", code, err)
	}
	if !strings.Contains(stderr.String(), "shoal exec: exec \"nosuchcmd\"") {
		t.Errorf("exec of a missing program said %q", stderr.String())
	}
}

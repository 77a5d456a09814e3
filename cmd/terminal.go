package cmd

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/shoal-edge/shoal/api"
	"golang.org/x/term"
)

// withTerm gives a command run with a terminal the TERM of the caller's
// (xterm when it has none), as ssh and docker do: without it, programs
// that draw (top, vi, less) do not know what they draw on. An -e TERM=...
// of the user's wins.
func withTerm(env []string, callers string) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "TERM=") {
			return env
		}
	}
	if callers == "" {
		callers = "xterm"
	}
	return append(env, "TERM="+callers)
}

// attachTerminal puts the caller's terminal in raw mode for exec -t and
// follows its size. When stdin is no terminal (a script, a pipe), the
// command still gets one on the node: only the local side is left as is.
// restore undoes it all and stops the resize watcher.
func attachTerminal(req *api.ExecRequest) (resize chan api.TermSize, restore func(), err error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, func() {}, nil
	}
	if cols, rows, err := term.GetSize(fd); err == nil {
		req.Rows, req.Cols = uint16(rows), uint16(cols)
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, nil, fmt.Errorf("exec -t: %w", err)
	}
	resize = make(chan api.TermSize, 1)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range winch {
			if cols, rows, err := term.GetSize(fd); err == nil {
				select {
				case resize <- api.TermSize{Rows: uint16(rows), Cols: uint16(cols)}:
				default:
				}
			}
		}
	}()
	return resize, func() {
		signal.Stop(winch)
		close(winch) // no signal is delivered after Stop
		<-done
		_ = term.Restore(fd, old)
	}, nil
}

package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ExecTimeout bounds Exec: a command that hangs (a CLI dialing across a
// partition) is killed rather than left to the test's own timeout.
const ExecTimeout = 30 * time.Second

// proc is one run of a node's argv.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process is reaped

	// mu is held while signalling the process group and while reaping its
	// leader: the group's id is the leader's pid, which is not reused
	// until the leader is reaped, so a signal never reaches a stranger.
	mu     sync.Mutex
	reaped bool
	err    error // how it exited, once reaped
}

// Start runs argv in node name's namespace, with env added to the test
// process's environment, stdout and stderr appended to LogPath(name). The
// process leads a group of its own. It is an error to Start a node whose
// last process is still running.
func (l *Lab) Start(name string, argv, env []string) error {
	n, err := l.node(name)
	if err != nil {
		return err
	}
	if len(argv) == 0 {
		return fmt.Errorf("lab: start %s: empty argv", name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.argv, n.env = append([]string(nil), argv...), append([]string(nil), env...)
	return n.start()
}

// Restart starts node name again with the argv and env of its last Start.
func (l *Lab) Restart(name string) error {
	n, err := l.node(name)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.argv == nil {
		return fmt.Errorf("lab: restart %s: never started", name)
	}
	return n.start()
}

// start runs n.argv; n.mu is held.
func (n *node) start() error {
	if n.proc != nil && n.proc.running() {
		return fmt.Errorf("lab: start %s: pid %d still running", n.Name, n.proc.cmd.Process.Pid)
	}
	cmd := exec.Command(n.argv[0], n.argv[1:]...)
	cmd.Env = append(os.Environ(), n.env...)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// Sent when the thread that forked dies: inNetns only lets that
		// thread die if it could not restore it, and then start fails.
		Pdeathsig: syscall.SIGKILL,
	}
	n.mark("start %q", n.argv)
	err := inNetns(n.ns, cmd.Start)
	if err != nil {
		if cmd.Process != nil {
			// Started, but the thread it came from is lost.
			cmd.Process.Kill()
			cmd.Wait()
		}
		n.mark("start failed: %v", err)
		return fmt.Errorf("lab: start %s: %w", n.Name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	n.proc = p
	go p.wait(n)
	return nil
}

// wait reaps the process and notes how it ended in the log. It waits for
// the exit without reaping first (WNOWAIT), so that the group can be
// signalled until the moment p.reaped is set.
func (p *proc) wait(n *node) {
	defer close(p.done)
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	p.mu.Lock()
	err := p.cmd.Wait()
	p.reaped, p.err = true, err
	p.mu.Unlock()
	n.mark("pid %d exited: %v", p.cmd.Process.Pid, exitString(err))
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig to the process group while its leader is not reaped.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return nil
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && err != syscall.ESRCH {
		return fmt.Errorf("kill -%d -%d: %w", sig, p.cmd.Process.Pid, err)
	}
	return nil
}

// waitDone waits up to timeout for the process to be reaped.
func (p *proc) waitDone(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// current is n's last process, or nil.
func (n *node) current() *proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// kill SIGKILLs n's process group and waits for the leader to be reaped.
func (n *node) kill() error {
	p := n.current()
	if p == nil || !p.running() {
		return nil
	}
	n.mark("SIGKILL")
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	if !p.waitDone(teardownTimeout) {
		return fmt.Errorf("pid %d not reaped %v after SIGKILL", p.cmd.Process.Pid, teardownTimeout)
	}
	return nil
}

// Kill9 kills node name's process group with SIGKILL and waits until its
// leader is reaped. A node that is not running is left as it is.
func (l *Lab) Kill9(name string) error {
	n, err := l.node(name)
	if err != nil {
		return err
	}
	if err := n.kill(); err != nil {
		return fmt.Errorf("lab: kill %s: %w", name, err)
	}
	return nil
}

// Stop sends SIGTERM to node name's process (the leader only: it is the
// one to shut its own children down) and waits up to grace for it to
// exit; then it kills the process group as Kill9 does and reports that it
// had to. A node that is not running is left as it is.
func (l *Lab) Stop(name string, grace time.Duration) error {
	n, err := l.node(name)
	if err != nil {
		return err
	}
	p := n.current()
	if p == nil || !p.running() {
		return nil
	}
	n.mark("SIGTERM")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("lab: stop %s: %w", name, err)
	}
	if p.waitDone(grace) {
		return nil
	}
	if err := n.kill(); err != nil {
		return fmt.Errorf("lab: stop %s: %w", name, err)
	}
	return fmt.Errorf("lab: stop %s: still running %v after SIGTERM, killed", name, grace)
}

// Wait waits up to timeout for node name's last process to exit and
// returns how it exited: nil for status 0, an *exec.ExitError otherwise.
// It is an error if the node never started or its process still runs
// after timeout.
func (l *Lab) Wait(name string, timeout time.Duration) error {
	p := l.mustNode(name).current()
	if p == nil {
		return fmt.Errorf("lab: wait %s: never started", name)
	}
	if !p.waitDone(timeout) {
		return fmt.Errorf("lab: wait %s: pid %d still running after %v", name, p.cmd.Process.Pid, timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Running reports whether node name's last process is still running.
func (l *Lab) Running(name string) bool {
	p := l.mustNode(name).current()
	return p != nil && p.running()
}

// LogPath is the file that collects the output of node name's processes.
func (l *Lab) LogPath(name string) string { return l.mustNode(name).logPath }

// Exec runs argv in node name's namespace and returns its combined output:
// a short command such as a CLI call to a daemon over the lab's network.
// It is killed after ExecTimeout. Its output is not in LogPath.
func (l *Lab) Exec(name string, argv ...string) ([]byte, error) {
	n, err := l.node(name)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("lab: exec in %s: empty argv", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ExecTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A child it leaves behind holding the output pipe must not hold Exec.
	cmd.WaitDelay = time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // see start
	if err := inNetns(n.ns, cmd.Start); err != nil {
		if cmd.Process != nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		return nil, fmt.Errorf("lab: exec %q in %s: %w", argv, name, err)
	}
	err = cmd.Wait()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("killed after %v: %w", ExecTimeout, err)
	}
	if err != nil {
		return out.Bytes(), fmt.Errorf("lab: exec %q in %s: %w", argv, name, err)
	}
	return out.Bytes(), nil
}

// mark writes a line of the lab's own into n's log, so that the log tells
// which run said what.
func (n *node) mark(format string, args ...any) {
	if n.log != nil {
		fmt.Fprintf(n.log, "=== lab: %s %s: %s\n", time.Now().Format("15:04:05.000"), n.Name, fmt.Sprintf(format, args...))
	}
}

// killAllIn kills every process with a thread in one of the namespaces and
// waits until none is left. Whoever is their parent reaps them (the lab,
// or init for orphans).
func killAllIn(nss []netns.NsHandle, timeout time.Duration) error {
	inos := map[uint64]bool{}
	for _, ns := range nss {
		var st unix.Stat_t
		if err := unix.Fstat(int(ns), &st); err != nil {
			return fmt.Errorf("stat network namespace: %w", err)
		}
		inos[st.Ino] = true
	}
	return testutil.Poll(timeout, func() error {
		pids := pidsIn(inos)
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			if pid == os.Getpid() {
				return fmt.Errorf("a thread of the test process is in a lab namespace")
			}
			killPid(pid, inos)
		}
		return fmt.Errorf("processes %v in the lab's namespaces after SIGKILL", pids)
	})
}

// killPid SIGKILLs pid through a pidfd, after checking through that same
// pidfd's process that it is still in one of the namespaces: a pid that
// was reused meanwhile is left alone.
func killPid(pid int, inos map[uint64]bool) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // gone
	}
	defer unix.Close(fd)
	if !inNamespaces(pid, inos) {
		return
	}
	unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

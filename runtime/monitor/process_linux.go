package monitor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/shoal-edge/shoal/runtime/monitor/ctl"
	"golang.org/x/sys/unix"
)

// monitorProc is a monitor process that waits on its control socket for
// the container it is to fork and monitor (package ctl). One started ahead
// of time (Config.Spare) is a spare; it exits when the socket closes first:
// the daemon went away, or Close.
type monitorProc struct {
	cmd    *exec.Cmd
	reaped chan struct{}
	sock   *os.File // our end of the control socket
	// watched is closed once the init's watch has read all the monitor
	// sent (it hung up); nil until the monitor forked an init.
	watched chan struct{}
}

// startMonitor starts a monitor process; arg is its argv[2], its state dir
// or, for a spare, spareArgv2, which it overwrites with its state dir.
func (m *Monitors) startMonitor(arg string) (*monitorProc, error) {
	prog, err := m.program()
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("monitor control socket: %w", err)
	}
	// Non-blocking: our reads then take deadlines.
	_ = unix.SetNonblock(fds[0], true)
	ours, theirs := os.NewFile(uintptr(fds[0]), "monitor"), os.NewFile(uintptr(fds[1]), "monitor")
	defer theirs.Close()
	cmd := &exec.Cmd{
		Path: prog,
		Args: []string{"shoal-monitor", monitorArg, arg},
		// One P is plenty and saves per-P caches; nothing of the
		// daemon's environment reaches it.
		Env:        []string{"GOMAXPROCS=1"},
		Dir:        "/",
		ExtraFiles: []*os.File{theirs}, // fd 3: ctl.FD
		// Its own session and no parent-death signal: the monitor and
		// its container outlive the daemon.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		ours.Close()
		return nil, fmt.Errorf("run monitor: %w", err)
	}
	reaped := make(chan struct{})
	go func() {
		_ = cmd.Wait() // monitors are our children until we exit
		close(reaped)
	}()
	return &monitorProc{cmd: cmd, reaped: reaped, sock: ours}, nil
}

// monitorFor returns the spare monitor, if there is one, or a new one for
// the state dir dir.
func (m *Monitors) monitorFor(dir string) (*monitorProc, error) {
	if sp, ok := m.spare.Take(); ok {
		select {
		case <-sp.reaped:
			// Killed while it waited (the OOM killer, an admin):
			// start one as if there were none.
			sp.discard()
		default:
			return sp, nil
		}
	}
	return m.startMonitor(dir)
}

// pid is the monitor's pid.
func (mp *monitorProc) pid() int { return mp.cmd.Process.Pid }

// discard ends a monitor that has no running container: it exits when its
// socket closes (killing an init it forked); one that does not in a few
// seconds is killed.
func (mp *monitorProc) discard() {
	_ = mp.sock.Close()
	select {
	case <-mp.reaped:
	case <-time.After(5 * time.Second):
		_ = mp.cmd.Process.Kill()
		<-mp.reaped
	}
}

// started tells the monitor that its container runs, with the state
// document it serves, and ends our side of the control socket.
//
// Closing a unix socket with a message still unread on our side (the
// monitor's "exited", just sent) resets the connection, and the monitor
// would read that instead of Started: it closes only once the monitor,
// having read Started, has hung up and the init's watch has read all.
func (mp *monitorProc) started(state []byte) error {
	defer mp.sock.Close()
	_ = mp.sock.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := mp.sock.Write(append([]byte(ctl.Started), state...)); err != nil {
		return fmt.Errorf("tell the monitor the container runs: %w", err)
	}
	select {
	case <-mp.watched:
	case <-time.After(5 * time.Second):
		return errors.New("tell the monitor the container runs: it did not take the message within 5s")
	}
	return nil
}

// Close removes the spare monitor, if any, and makes no more. Monitors of
// containers are left running: they outlive the daemon (and keep the
// program they run, should it have been a copy in the state dir).
func (m *Monitors) Close() {
	m.spare.Close()
	_ = os.Remove(filepath.Join(m.cfg.StateDir, programFileName))
}

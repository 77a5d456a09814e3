package monitor

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// spareMonitor is a monitor process started ahead of time (Config.Spare):
// its Go runtime is up and it waits on a socket for the state dir of the
// container it will monitor, with the report pipe and the lock. It exits
// when the socket closes first: the daemon went away, or Close.
type spareMonitor struct {
	cmd    *exec.Cmd
	reaped chan struct{}
	sock   *os.File // our end
}

// monitorCmd is a monitor process: argv[2] is its state dir or spareArgv2;
// files are its fds from 3 on.
func (m *Monitors) monitorCmd(arg string, files ...*os.File) *exec.Cmd {
	return &exec.Cmd{
		Path: m.cfg.Binary,
		// The id in argv names the monitor in ps.
		Args: []string{"shoal-monitor", monitorArg, arg},
		// One P is plenty and saves per-P caches; nothing of the
		// daemon's environment reaches it.
		Env:        []string{"GOMAXPROCS=1"},
		Dir:        "/",
		ExtraFiles: files,
		// Its own session and no parent-death signal: the monitor and
		// its container outlive the daemon.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
}

// startReaped starts cmd and reaps it when it exits: monitors are our
// children until we exit.
func startReaped(cmd *exec.Cmd) (chan struct{}, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	reaped := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(reaped)
	}()
	return reaped, nil
}

// launch runs the monitor of the state dir dir, handing it the report
// pipe's write end and the lock: the spare if there is one, else a new
// process.
func (m *Monitors) launch(dir string, report, lock *os.File) (*exec.Cmd, chan struct{}, error) {
	if sp, ok := m.spare.Take(); ok {
		err := unix.Sendmsg(int(sp.sock.Fd()), []byte(dir), unix.UnixRights(int(report.Fd()), int(lock.Fd())), nil, 0)
		_ = sp.sock.Close()
		if err == nil {
			return sp.cmd, sp.reaped, nil
		}
		m.log.Warn("hand a container to the spare monitor", "err", err)
		sp.discard()
	}
	cmd := m.monitorCmd(dir, report, lock) // fds 3 and 4: reportFD, lockFD
	reaped, err := startReaped(cmd)
	return cmd, reaped, err
}

func (m *Monitors) newSpare() (*spareMonitor, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("spare monitor socket: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "spare"), os.NewFile(uintptr(fds[1]), "spare")
	cmd := m.monitorCmd(spareArgv2(m.cfg.StateDir), theirs) // fd 3: spareFD
	reaped, err := startReaped(cmd)
	theirs.Close()
	if err != nil {
		ours.Close()
		return nil, err
	}
	return &spareMonitor{cmd: cmd, reaped: reaped, sock: ours}, nil
}

// discard ends a spare: it exits when its socket closes; one that does not
// in a few seconds is killed.
func (sp *spareMonitor) discard() {
	_ = sp.sock.Close()
	select {
	case <-sp.reaped:
	case <-time.After(5 * time.Second):
		_ = sp.cmd.Process.Kill()
		<-sp.reaped
	}
}

// Close removes the spare monitor, if any, and makes no more. Monitors of
// containers are left running: they outlive the daemon.
func (m *Monitors) Close() { m.spare.Close() }

package monitor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-edge/shoal/runtime/linux"
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

// forkTimeout bounds the wait for a monitor's answer to Start.
const forkTimeout = 10 * time.Second

// forker has a monitor fork the container init: linux.Spec.Forker.
type forker struct {
	m     *Monitors
	mp    *monitorProc // replaced if it turns out dead
	start ctl.Start    // without the init's part
	fds   []*os.File   // lock and listener
}

func (f *forker) ForkInit(in linux.InitFork) (linux.RemoteInit, error) {
	s := f.start
	s.Args, s.Cloneflags, s.CgroupFD = in.Args, in.Cloneflags, in.Cgroup != nil
	files := append(f.fds[:len(f.fds):len(f.fds)], in.Exe, in.Config, in.Errors)
	if in.Cgroup != nil {
		files = append(files, in.Cgroup)
	}
	fds := make([]int, len(files))
	for i, file := range files {
		fds[i] = int(file.Fd())
	}
	err := f.mp.send(s.Marshal(), fds)
	if err != nil {
		// A spare that died a moment ago, before it got the request:
		// once more, with a new monitor. Not once it may have got it:
		// an init it forked might live on (one killed before its
		// parent-death signal was set) and read the same pipes.
		f.mp.discard()
		if f.mp, err = f.m.startMonitor(s.Dir); err != nil {
			return nil, err
		}
		err = f.mp.send(s.Marshal(), fds)
	}
	if err != nil {
		return nil, err
	}
	reply, err := f.mp.reply()
	if err != nil {
		return nil, err
	}
	if msg, ok := strings.CutPrefix(reply, ctl.ErrReply); ok {
		return nil, &RemoteError{Msg: msg}
	}
	fields := strings.Fields(strings.TrimPrefix(reply, ctl.PidReply))
	if !strings.HasPrefix(reply, ctl.PidReply) || len(fields) != 2 {
		return nil, fmt.Errorf("monitor answer %q", reply)
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil {
		return nil, fmt.Errorf("monitor answer %q", reply)
	}
	ri := &remoteInit{pid: pid, inCgroup: fields[1] == "1", exited: make(chan struct{})}
	f.mp.watched = make(chan struct{})
	go ri.watch(f.mp.sock, f.mp.watched)
	return ri, nil
}

// send sends the Start msg with fds. Through the raw connection, not
// Fd(): that would make the socket blocking, and its deadlines void.
func (mp *monitorProc) send(msg []byte, fds []int) error {
	raw, err := mp.sock.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	_ = mp.sock.SetWriteDeadline(time.Now().Add(forkTimeout))
	err = raw.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), msg, unix.UnixRights(fds...), nil, 0)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("hand the container to its monitor: %w", err)
	}
	return nil
}

// reply reads the monitor's answer to Start.
func (mp *monitorProc) reply() (string, error) {
	_ = mp.sock.SetReadDeadline(time.Now().Add(forkTimeout))
	defer mp.sock.SetReadDeadline(time.Time{})
	buf := make([]byte, 4096)
	n, err := mp.sock.Read(buf)
	if err == nil && n == 0 {
		err = io.EOF
	}
	if err != nil {
		return "", fmt.Errorf("no answer from the monitor: %w", err)
	}
	return string(buf[:n]), nil
}

// remoteInit is an init a monitor forked, until the container runs.
type remoteInit struct {
	pid      int
	inCgroup bool
	exited   chan struct{} // closed when the monitor says it ended, or hangs up
}

// watch reads the monitor's "exited" (or the socket's end).
//
// It reads until the monitor hangs up (after Started, or when it exits),
// then closes done.
func (ri *remoteInit) watch(sock *os.File, done chan struct{}) {
	defer close(done)
	var once sync.Once
	exited := func() { once.Do(func() { close(ri.exited) }) }
	defer exited()
	buf := make([]byte, 64)
	for {
		n, err := sock.Read(buf)
		if err != nil || n == 0 {
			return
		}
		if bytes.Equal(buf[:n], []byte(ctl.Exited)) {
			exited()
		}
	}
}

func (ri *remoteInit) Pid() int                { return ri.pid }
func (ri *remoteInit) InCgroup() bool          { return ri.inCgroup }
func (ri *remoteInit) Exited() <-chan struct{} { return ri.exited }

// killWait bounds the wait for a SIGKILLed init.
const killWait = 30 * time.Second

func (ri *remoteInit) Kill() {
	select {
	case <-ri.exited:
		return // reaped, maybe: the pid may be another process's now
	default:
	}
	_ = unix.Kill(ri.pid, unix.SIGKILL)
	select {
	case <-ri.exited:
	case <-time.After(killWait):
	}
}

// Close removes the spare monitor, if any, and makes no more. Monitors of
// containers are left running: they outlive the daemon (and keep the
// program they run, should it have been a copy in the state dir).
func (m *Monitors) Close() {
	m.spare.Close()
	_ = os.Remove(filepath.Join(m.cfg.StateDir, programFileName))
}

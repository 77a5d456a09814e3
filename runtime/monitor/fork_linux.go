package monitor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/shoal-edge/shoal/runtime/linux"
	"github.com/shoal-edge/shoal/runtime/monitor/ctl"
	"golang.org/x/sys/unix"
)

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
	reply, unread, err := f.ask(s.Marshal(), fds)
	if unread {
		// A spare that died a moment ago, before it read the request:
		// once more,
		// with a new monitor. Not once it may have read it: an init it
		// forked might live on (one killed before its parent-death
		// signal was set) and read the same pipes.
		f.mp.discard()
		if f.mp, err = f.m.startMonitor(s.Dir); err != nil {
			return nil, err
		}
		reply, _, err = f.ask(s.Marshal(), fds)
	}
	if err != nil {
		return nil, err
	}
	if msg, ok := strings.CutPrefix(reply, ctl.ErrReply); ok {
		return nil, &RemoteError{Msg: msg}
	}
	pid, inCgroup, err := ctl.ParsePid(reply)
	if err != nil {
		return nil, err
	}
	ri := &remoteInit{pid: pid, inCgroup: inCgroup, exited: make(chan struct{})}
	f.mp.watched = make(chan struct{})
	go ri.watch(f.mp.sock, f.mp.watched)
	return ri, nil
}

// ask sends the monitor the Start msg with fds and reads its answer.
// unread says the monitor surely never read msg: the send failed, or it
// hung up with msg, the only message it is sent, unread (ECONNRESET).
func (f *forker) ask(msg []byte, fds []int) (reply string, unread bool, err error) {
	if err := f.mp.send(msg, fds); err != nil {
		return "", true, err
	}
	reply, err = f.mp.reply()
	return reply, errors.Is(err, unix.ECONNRESET), err
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

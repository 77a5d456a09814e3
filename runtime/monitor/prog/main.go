//go:build linux

// Command shoal-monitor is the process that keeps one container alive
// independently of the daemon. It is its own small program, embedded into
// shoal (see package monitor), because it runs once per container and its
// memory is the per-container overhead: it links little beyond os and
// os/signal (the log writer, the start protocol, the fd sweep of
// internal/fds), and keeps no more than a few goroutines.
//
// The daemon starts it with a control socket as fd 3 and sends one Start
// (package ctl). The monitor forks the container init from it, in its
// namespaces and cgroup; everything else about the container (its cgroup,
// filesystem, config, and its removal after the exit) is the daemon's. The
// monitor is the init's parent: it copies the container's output into its
// rotating log, records the exit in exit.json and answers the daemon's
// requests on the listening socket it was given (package monitor documents
// the protocol). It exits after its container did.
package main

import (
	"bytes"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	fdsweep "github.com/shoal-edge/shoal/internal/fds"
	"github.com/shoal-edge/shoal/runtime/logs"
	"github.com/shoal-edge/shoal/runtime/monitor/ctl"
)

// stopGrace is the grace a monitor gives its container on SIGTERM.
const stopGrace = 10 * time.Second

// killWait bounds the wait for a SIGKILLed container: only a task stuck in
// uninterruptible sleep takes longer.
const killWait = 30 * time.Second

// gcPercent keeps the heap near its live size: the runtime's default lets
// a heap grow to 4 MiB before its first collection, which for a monitor
// would be garbage from the daemon's requests, held for good.
const gcPercent = 10

func main() {
	debug.SetGCPercent(gcPercent)
	// The init's parent-death signal follows the thread that forked it:
	// main's thread forks and is never given back.
	runtime.LockOSThread()
	// Not the terminal's nor the daemon's signals: only SIGTERM and SIGINT
	// mean "stop the container". The others are caught and dropped, not
	// ignored: an ignored signal stays ignored across exec, in the
	// container (SIGHUP is how many programs reload).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP, syscall.SIGPIPE)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	// A spare has no container to stop: it just goes. Once it has one,
	// the signal waits for its start to finish and then stops it.
	var assigned atomic.Bool
	stops := make(chan struct{}, 1)
	go func() {
		for range sigs {
			if !assigned.Load() {
				os.Exit(0)
			}
			select {
			case stops <- struct{}{}:
			default:
			}
		}
	}()
	// ps, top and pgrep show a process's comm, which an exec through
	// /proc/self/fd/N sets to "N".
	_ = os.WriteFile("/proc/self/comm", []byte("shoal-monitor"), 0)
	fdsweep.CloseOnExecAbove(ctl.FD)

	start, sent, ok := receiveStart()
	if !ok {
		os.Exit(0) // a spare the daemon gave up on, or a garbled start
	}
	assigned.Store(true)
	if len(os.Args) > 2 {
		setArg(2, start.Dir)
	}
	// Stderr becomes the monitor's log: its own lines (logf) and what the
	// Go runtime prints when it crashes, instead of /dev/null.
	if f, err := os.OpenFile(filepath.Join(start.Dir, ctl.LogFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_CLOEXEC, 0o600); err == nil {
		_ = syscall.Dup3(int(f.Fd()), 2, 0)
		f.Close()
	}
	// sent[ctl.FDLock] stays open for life: the daemon tells a live
	// monitor by the lock.
	m := &monitor{dir: start.Dir, exited: make(chan struct{})}
	pid, inCgroup, logR, err := forkInit(start, sent)
	if err != nil {
		reply(ctl.ErrReply + err.Error())
		os.Exit(1)
	}
	m.pid = pid
	reply(ctl.Pid(pid, inCgroup))

	waited := make(chan exitStatus, 1)
	go func() { waited <- wait(pid) }()
	copied := make(chan struct{})
	go m.copyOutput(start, logR, copied)

	state, ok := awaitStarted(waited)
	if !ok {
		// The start failed: the daemon hung up. The init dies with us
		// in any case (parent-death signal).
		_ = syscall.Kill(pid, syscall.SIGKILL)
		os.Exit(1)
	}
	m.state = state
	go m.serve(sent[ctl.FDListener])
	go func() {
		for range stops {
			m.logf("stopping the container on signal")
			go m.stop(stopGrace)
		}
	}()
	ws := <-waited
	m.finish(ws, copied)
}

// receiveStart reads the Start message and its fds from the control
// socket. ok is false when the socket closed instead.
func receiveStart() (ctl.Start, []int, bool) {
	buf, oob := make([]byte, 64<<10), make([]byte, syscall.CmsgSpace(8*4))
	n, oobn, _, _, err := syscall.Recvmsg(ctl.FD, buf, oob, syscall.MSG_CMSG_CLOEXEC)
	if err != nil || n == 0 {
		return ctl.Start{}, nil, false
	}
	start, err := ctl.ParseStart(buf[:n])
	if err != nil {
		reply(ctl.ErrReply + err.Error())
		return ctl.Start{}, nil, false
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	var fds []int
	if err == nil && len(msgs) == 1 {
		fds, err = syscall.ParseUnixRights(&msgs[0])
	}
	if err != nil || len(fds) != start.FDs() {
		reply(ctl.ErrReply + "start message: wrong fds")
		return ctl.Start{}, nil, false
	}
	return start, fds, true
}

func reply(s string) { _, _ = syscall.Write(ctl.FD, []byte(s)) }

// forkInit forks the container init with the config and error pipes as
// its fds 3 and 4 and the container's output on a pipe (or /dev/null)
// whose read end it returns. inCgroup says whether it was born in the
// cgroup sent along (clone3, Linux 5.7); if that fails, it is not, and the
// daemon moves it.
func forkInit(s ctl.Start, fds []int) (pid int, inCgroup bool, logR *os.File, err error) {
	null, err := syscall.Open("/dev/null", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, false, nil, err
	}
	defer syscall.Close(null)
	out := null
	if s.LogPath != "" {
		r, w, err := os.Pipe()
		if err != nil {
			return 0, false, nil, err
		}
		defer w.Close()
		out, logR = int(w.Fd()), r
	}
	attr := &syscall.SysProcAttr{Cloneflags: s.Cloneflags, Pdeathsig: syscall.SIGKILL}
	proc := &syscall.ProcAttr{
		Dir:   "/",
		Env:   fdsweep.HelperEnv, // the program's env travels in the config
		Files: []uintptr{uintptr(null), uintptr(out), uintptr(out), uintptr(fds[ctl.FDConfig]), uintptr(fds[ctl.FDErrors])},
		Sys:   attr,
	}
	exe := "/proc/self/fd/" + strconv.Itoa(fds[ctl.FDExe])
	if s.CgroupFD {
		attr.UseCgroupFD, attr.CgroupFD = true, fds[ctl.FDCgroup]
		pid, err = syscall.ForkExec(exe, s.Args, proc)
		inCgroup = err == nil
	}
	if !inCgroup {
		attr.UseCgroupFD = false
		pid, err = syscall.ForkExec(exe, s.Args, proc)
	}
	// The init holds its copies; ours must go, or the daemon never sees
	// EOF on them.
	for _, i := range []int{ctl.FDExe, ctl.FDConfig, ctl.FDErrors, ctl.FDCgroup} {
		if i < len(fds) {
			syscall.Close(fds[i])
		}
	}
	if err != nil {
		if logR != nil {
			logR.Close()
		}
		return 0, false, nil, errors.New("fork container init: " + err.Error())
	}
	return pid, inCgroup, logR, nil
}

// wait waits for the init to end and returns how, without reaping it: its
// pid stays its own (a zombie) until the monitor exits, so that a late
// signal or kill never reaches another process that got the pid.
func wait(pid int) exitStatus {
	var info [128]byte // siginfo_t
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid), uintptr(unsafe.Pointer(&info[0])),
			syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return exitStatus{code: -1}
		}
		// si_code at 8; the SIGCHLD fields (pid, uid, status) after
		// the header, which is padded to 16 bytes on 64-bit.
		hdr := 12
		if unsafe.Sizeof(uintptr(0)) == 8 {
			hdr = 16
		}
		code := *(*int32)(unsafe.Pointer(&info[8]))
		status := int(*(*int32)(unsafe.Pointer(&info[hdr+8])))
		if code == cldExited {
			return exitStatus{code: status}
		}
		return exitStatus{code: 128 + status, signal: status} // CLD_KILLED, CLD_DUMPED
	}
}

// waitid's P_PID and siginfo's CLD_EXITED (syscall has neither).
const (
	pPID      = 1
	cldExited = 1
)

// exitStatus is how the init ended: the exit code, or 128+signal.
type exitStatus struct{ code, signal int }

// awaitStarted waits for the daemon's Started message and returns the
// state document in it; it is false when the daemon hung up instead. An
// init that ends meanwhile is reported ("exited"): it may have failed, or
// its program may have run and ended.
func awaitStarted(waited chan exitStatus) ([]byte, bool) {
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 4096)
		n, err := syscall.Read(ctl.FD, buf)
		if err != nil || n == 0 {
			n = 0
		}
		got <- buf[:n]
	}()
	var msg []byte
	select {
	case msg = <-got:
	case ws := <-waited:
		// Its program may have run and ended already; the daemon
		// decides.
		waited <- ws
		reply(ctl.Exited)
		msg = <-got
	}
	syscall.Close(ctl.FD)
	state, ok := bytes.CutPrefix(msg, []byte(ctl.Started))
	return bytes.TrimSpace(state), ok
}

// monitor is a running monitor's state.
type monitor struct {
	dir   string
	pid   int
	state []byte // state.json, as the daemon wrote it

	exited chan struct{} // closed once the exit is recorded
	exit   []byte        // the exit document, written before exited is closed

	mu      sync.Mutex // guards closing and conns.Add
	closing bool       // finish waits for the handlers: start no more
	conns   sync.WaitGroup
}

// copyOutput copies the container's output into its log; done is closed
// once the container and everything it started have closed the pipe.
func (m *monitor) copyOutput(s ctl.Start, r *os.File, done chan struct{}) {
	defer close(done)
	if r == nil {
		return
	}
	defer r.Close()
	var w *logs.Stamped
	if lw, err := logs.Open(s.LogPath, s.LogMaxSize, s.LogKeep); err != nil {
		m.logf("open the container's log: " + err.Error())
	} else {
		w = logs.Stamp(lw, time.Now) // `shoal logs --timestamps` and `--since` read the stamps
	}
	buf := make([]byte, 16<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 && w != nil {
			if _, werr := w.Write(buf[:n]); werr != nil {
				m.logf("write the container's log: " + werr.Error())
			}
		}
		if err != nil {
			break
		}
	}
	if w != nil {
		w.Close()
	}
}

// finish records the exit, tells the waiters and returns once they had
// their answer.
func (m *monitor) finish(ex exitStatus, copied chan struct{}) {
	m.exit = exitDoc(ex.code, ex.signal, time.Now().UTC())
	// Before anything else: a monitor killed from here on still leaves the
	// exit for the next daemon. Not fsynced: after a power cut every
	// container is dead anyway, and a sync costs flash wear and
	// milliseconds on the restart path.
	if err := writeFile(filepath.Join(m.dir, ctl.ExitFile), m.exit); err != nil {
		m.logf("record the exit: " + err.Error())
	}
	close(m.exited)
	_ = os.Remove(filepath.Join(m.dir, ctl.SockFile))
	// No new handlers from here on (a client still in the backlog reads
	// exit.json); those running answer below.
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	// The last output of processes that outlived PID 1 for a moment.
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
	}
	done := make(chan struct{})
	go func() { m.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		m.logf("clients still connected; exiting anyway")
	}
	var ws syscall.WaitStatus
	_, _ = syscall.Wait4(m.pid, &ws, syscall.WNOHANG, nil)
	os.Exit(0)
}

// exitDoc is exit.json and the answer to "wait", as package monitor reads it.
func exitDoc(code, sig int, at time.Time) []byte {
	b := []byte(`{"code":`)
	b = strconv.AppendInt(b, int64(code), 10)
	if sig != 0 {
		b = append(b, `,"signal":`...)
		b = strconv.AppendInt(b, int64(sig), 10)
	}
	b = append(b, `,"exited_at":"`...)
	b = at.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

// writeFile replaces name with data atomically.
func writeFile(name string, data []byte) error {
	tmp := name + ".tmp"
	err := os.WriteFile(tmp, append(data, '\n'), 0o600)
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// logf appends a line to the monitor's own log (not the container's): its
// stderr, opened O_APPEND, so each line is written whole.
func (m *monitor) logf(msg string) {
	line := time.Now().UTC().AppendFormat(nil, time.RFC3339Nano)
	line = append(line, " pid="...)
	line = strconv.AppendInt(line, int64(os.Getpid()), 10)
	line = append(append(append(line, ' '), msg...), '\n')
	_, _ = os.Stderr.Write(line)
}

// stop sends SIGTERM and, after grace, SIGKILL to PID 1, which takes the
// whole pid namespace with it. It returns once PID 1 has exited.
func (m *monitor) stop(grace time.Duration) error {
	select {
	case <-m.exited:
		return nil
	default:
	}
	_ = syscall.Kill(m.pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-m.exited:
		return nil
	case <-t.C:
	}
	m.logf("the container ignored SIGTERM; killing it")
	_ = syscall.Kill(m.pid, syscall.SIGKILL)
	select {
	case <-m.exited:
		return nil
	case <-time.After(killWait):
		return errors.New("the container did not exit within 30s of SIGKILL")
	}
}

// serve answers requests on the listening socket until the process exits.
func (m *monitor) serve(lfd int) {
	// Non-blocking before NewFile: only then is the file on the runtime's
	// poller, and accept waits there.
	if err := syscall.SetNonblock(lfd, true); err != nil {
		m.logf("serve: " + err.Error())
		return
	}
	raw, err := os.NewFile(uintptr(lfd), "listener").SyscallConn()
	if err != nil {
		m.logf("serve: " + err.Error())
		return
	}
	backoff := 100 * time.Millisecond
	for {
		var fd int
		var aerr error
		err := raw.Read(func(lfd uintptr) bool {
			fd, _, aerr = syscall.Accept4(int(lfd), syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK)
			return aerr != syscall.EAGAIN
		})
		if err == nil {
			err = aerr
		}
		if err != nil {
			if err == syscall.EINTR || err == syscall.ECONNABORTED {
				continue
			}
			// Out of fds, say: wait, and do not fill the disk with
			// the same line.
			m.logf("accept: " + err.Error())
			time.Sleep(backoff)
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		m.mu.Lock()
		if m.closing {
			m.mu.Unlock()
			syscall.Close(fd)
			return
		}
		m.conns.Add(1)
		m.mu.Unlock()
		go func() {
			defer m.conns.Done()
			conn := os.NewFile(uintptr(fd), "conn")
			defer conn.Close()
			m.handle(conn)
		}()
	}
}

// handle answers one request: one JSON object on one line each way.
func (m *monitor) handle(conn *os.File) {
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var line []byte
	buf := make([]byte, 512)
	for !bytes.Contains(line, []byte{'\n'}) && len(line) < 4096 {
		n, err := conn.Read(buf)
		line = append(line, buf[:n]...)
		if err != nil {
			break
		}
	}
	line, _, ok := bytes.Cut(line, []byte{'\n'})
	if !ok {
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	var resp []byte
	switch op := stringField(line, "op"); op {
	case "status":
		resp = append(append([]byte(`{"state":`), m.state...), '}')
		select {
		case <-m.exited:
			resp = append(append(append(resp[:len(resp)-1], `,"exited":`...), m.exit...), '}')
		default:
		}
	case "wait":
		// Until the container has exited, or the client hangs up.
		hangup := make(chan struct{})
		go func() {
			var b [1]byte
			_, _ = conn.Read(b[:])
			close(hangup)
		}()
		select {
		case <-m.exited:
			resp = append(append([]byte(`{"exit":`), m.exit...), '}')
		case <-hangup:
			return
		}
	case "stop":
		resp = errResp(m.stop(time.Duration(intField(line, "grace"))))
	case "signal":
		var err error
		select {
		case <-m.exited:
			err = errors.New("signal container: it has exited")
		default:
			if kerr := syscall.Kill(m.pid, syscall.Signal(intField(line, "signal"))); kerr != nil {
				err = errors.New("signal container: " + kerr.Error())
			}
		}
		resp = errResp(err)
	default:
		resp = errResp(errors.New("unknown op " + strconv.Quote(op)))
	}
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write(append(resp, '\n'))
}

func errResp(err error) []byte {
	if err == nil {
		return []byte("{}")
	}
	return append(append([]byte(`{"err":`), jsonString(err.Error())...), '}')
}

// stringField and intField read one field of the daemon's requests, flat
// JSON objects that encoding/json wrote: {"op":"stop","grace":10000000000}.
func stringField(obj []byte, key string) string {
	_, v, ok := bytes.Cut(obj, []byte(`"`+key+`":"`))
	if !ok {
		return ""
	}
	v, _, _ = bytes.Cut(v, []byte{'"'})
	return string(v)
}

func intField(obj []byte, key string) int64 {
	_, v, ok := bytes.Cut(obj, []byte(`"`+key+`":`))
	if !ok {
		return 0
	}
	end := 0
	for end < len(v) && (v[end] == '-' || v[end] >= '0' && v[end] <= '9') {
		end++
	}
	n, _ := strconv.ParseInt(string(v[:end]), 10, 64)
	return n
}

// jsonString quotes s as a JSON string.
func jsonString(s string) []byte {
	b := []byte{'"'}
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[r>>4], "0123456789abcdef"[r&15])
		default:
			b = append(b, string(r)...)
		}
	}
	return append(b, '"')
}

// setArg writes s over os.Args[i] in the process's own argument block, which
// /proc/PID/cmdline (and so ps) shows: a spare's argument holds room for the
// state dir it learns later. os.Args[i] points into that block (the Go
// runtime does not copy argv). The rest becomes spaces, so that the
// argument count stays the same; an s that does not fit is not written.
func setArg(i int, s string) {
	arg := os.Args[i]
	if len(s) > len(arg) {
		return
	}
	b := unsafe.Slice(unsafe.StringData(arg), len(arg))
	n := copy(b, s)
	for j := n; j < len(b); j++ {
		b[j] = ' '
	}
}

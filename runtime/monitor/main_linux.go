package monitor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/shoal-edge/shoal/runtime/linux"
	"github.com/shoal-edge/shoal/runtime/logs"
	"golang.org/x/sys/unix"
)

// reportFD is the inherited write end of the start report pipe; lockFD the
// inherited lock on the state dir, held for the monitor's whole life so
// that a daemon can tell a slow monitor from a dead one. A spare inherits
// only spareFD, a socket on which both arrive with its state dir.
const (
	reportFD = 3
	lockFD   = 4
	spareFD  = 3
)

// monitorGCPercent keeps the heap of a monitor, a few hundred KiB, from
// doubling before a collection. No memory limit: the runtime's own overhead
// is most of a monitor's memory, and a limit below it makes the GC run
// nonstop.
const monitorGCPercent = 50

// stopGrace is the grace a monitor gives its container on SIGTERM.
const stopGrace = 10 * time.Second

// Main is the monitor process: it starts the container described in the
// state directory os.Args[2], serves the daemon and exits after the
// container did. A spare (os.Args[2] is spareArg) first waits for its state
// directory. It never returns.
func Main() {
	debug.SetGCPercent(monitorGCPercent)
	// Not the terminal's nor the daemon's signals: only SIGTERM and
	// SIGINT mean "stop the container".
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	if !isSpare(os.Args[2]) {
		// The pipe and the lock must not leak into the container init;
		// the lock stays open (held) until this process exits.
		syscall.CloseOnExec(reportFD)
		syscall.CloseOnExec(lockFD)
		os.Exit(monitorMain(os.Args[2], os.NewFile(reportFD, "report")))
	}
	// A spare may wait for hours: not with the binary mapped by its start.
	debug.FreeOSMemory()
	trimMappings()
	dir, report, ok := awaitAssignment(spareFD)
	if !ok {
		os.Exit(0) // the daemon went away or gave up on this spare
	}
	setArgv2(dir)
	os.Exit(monitorMain(dir, report))
}

// setArgv2 writes s over argv[2] in the process's own argument block, which
// /proc/PID/cmdline (and so ps) shows; os.Args[2] points into it (Go does
// not copy argv; TestSpareMonitor would notice). s must fit the room a
// spare's argv[2] holds; the rest becomes spaces, so that the argument
// count stays the same.
func setArgv2(s string) {
	arg := os.Args[2]
	if len(s) > len(arg) {
		return // ps keeps showing "-"; the monitor works all the same
	}
	b := unsafe.Slice(unsafe.StringData(arg), len(arg))
	n := copy(b, s)
	for i := n; i < len(b); i++ {
		b[i] = ' '
	}
}

// awaitAssignment is a spare's wait for its container: one message on the
// inherited socket fd with the state directory's path and, as rights, the
// report pipe and the lock (kept open, not wrapped: a finalizer must never
// close it). ok is false when the socket closed instead.
func awaitAssignment(fd int) (dir string, report *os.File, ok bool) {
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(2*4))
	n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	_ = unix.Close(fd)
	if err != nil || n == 0 {
		return "", nil, false
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return "", nil, false
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 2 {
		return "", nil, false
	}
	return string(buf[:n]), os.NewFile(uintptr(fds[0]), "report"), true
}

// server is a running monitor's state.
type server struct {
	dir   string
	log   *slog.Logger
	c     *linux.Container
	state stateDoc

	exited chan struct{} // closed once the exit is recorded and the container removed
	exit   exitDoc       // written before exited is closed

	ln        *net.UnixListener
	serveDone chan struct{}  // closed when serve returned: no more handlers start
	conns     sync.WaitGroup // request handlers, added to by serve only
}

func monitorMain(dir string, report *os.File) int {
	logf, err := os.OpenFile(filepath.Join(dir, monLogFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		sendReport(report, startReport{Err: fmt.Sprintf("monitor log: %v", err)})
		return 1
	}
	log := slog.New(slog.NewTextHandler(logf, nil)).With("pid", os.Getpid())
	s, err := start(dir, log)
	if err != nil {
		log.Error("start", "err", err)
		r := startReport{Err: err.Error()}
		var ie *linux.InitError
		if errors.As(err, &ie) {
			r.InitError = ie
		}
		sendReport(report, r)
		return 1
	}
	sendReport(report, startReport{State: &s.state})
	trimMemory()
	s.run()
	return 0
}

func sendReport(w *os.File, r startReport) {
	if w == nil {
		return
	}
	_ = json.NewEncoder(w).Encode(r)
	_ = w.Close()
}

// start reads the spec, listens and starts the container; on error nothing
// of the container is left (the runtime undoes its start).
func start(dir string, log *slog.Logger) (*server, error) {
	var doc specDoc
	if err := readJSON(filepath.Join(dir, specFile), &doc); err != nil {
		return nil, err
	}
	spec := doc.Spec
	log = log.With("container", spec.ID)
	rt, err := linux.New(linux.Config{StateDir: doc.RuntimeStateDir, CgroupParent: doc.CgroupParent, Logger: log})
	if err != nil {
		return nil, err
	}
	ln, err := listen(dir)
	if err != nil {
		return nil, err
	}
	ls := spec.linux()
	var out *logs.Writer
	if spec.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o700); err != nil {
			ln.Close()
			return nil, fmt.Errorf("log dir: %w", err)
		}
		if out, err = logs.Open(spec.LogPath, spec.LogMaxSize, spec.LogKeep); err != nil {
			ln.Close()
			return nil, err
		}
		// One writer for both: os/exec copies them through one pipe.
		ls.Stdout, ls.Stderr = out, out
	}
	c, err := rt.Start(context.Background(), ls)
	if err != nil {
		ln.Close()
		if out != nil {
			out.Close()
		}
		return nil, err
	}
	s := &server{
		dir: dir, log: log, c: c, exited: make(chan struct{}), ln: ln, serveDone: make(chan struct{}),
		state: stateDoc{MonitorPid: os.Getpid(), Pid: c.Pid(), StartedAt: time.Now().UTC()},
	}
	if err := writeJSON(filepath.Join(dir, stateFile), s.state); err != nil {
		// The container runs: better a monitor without state.json
		// (status still answers) than killing it.
		log.Warn("write state", "err", err)
	}
	go s.serve()
	go func() {
		<-c.Done()
		if out != nil {
			// The container's stdio copier ended with Wait.
			out.Close()
		}
	}()
	return s, nil
}

// listen binds the socket. The state dir's path may be longer than a
// sockaddr allows (108 bytes): go through /proc/self/fd.
func listen(dir string) (*net.UnixListener, error) {
	path := filepath.Join(dir, sockFile)
	_ = os.Remove(path)
	var ln *net.UnixListener
	err := viaDirFD(dir, func(short string) error {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: short, Net: "unix"})
		ln = l
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("monitor socket: %w", err)
	}
	// The short name dies with the dir fd: unlink by the real path.
	ln.SetUnlinkOnClose(false)
	return ln, nil
}

// run waits for the container, records its exit, removes it and tells the
// waiters; it returns when the monitor may exit.
func (s *server) run() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for range sigs {
			s.log.Info("stopping the container on signal")
			go func() { _ = s.c.Stop(stopGrace) }()
		}
	}()
	ex := s.c.Wait()
	s.exit = exitDocOf(ex, time.Now().UTC())
	// Before anything else: a monitor killed from here on still leaves
	// the exit for the next daemon. Not fsynced: after a power cut every
	// container is dead anyway, and the sync would cost flash wear and
	// milliseconds on the restart path.
	if err := writeJSON(filepath.Join(s.dir, exitFile), s.exit); err != nil {
		s.log.Error("record exit", "err", err)
	}
	// Waiters learn the exit before the cleanup: the daemon may start the
	// next container meanwhile. Handle.Delete still waits for this
	// process to end, so nothing is reported gone before it is.
	close(s.exited)
	// The waiters' handlers are runnable now; on the monitor's one P they
	// would wait for the cleanup's first slow system call (1-2 ms here).
	runtime.Gosched()
	if err := s.c.Delete(); err != nil {
		s.log.Error("remove container", "err", err)
	}
	_ = os.Remove(filepath.Join(s.dir, sockFile))
	_ = s.ln.Close()
	// Answer whoever is connected (waiters get the exit now), then go.
	done := make(chan struct{})
	go func() {
		<-s.serveDone
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.log.Warn("clients still connected; exiting anyway")
	}
	s.log.Info("monitor exiting", "code", s.exit.Code)
}

func (s *server) serve() {
	defer close(s.serveDone)
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			defer conn.Close()
			s.handle(conn)
		}()
	}
}

// handle answers one request.
func (s *server) handle(conn *net.UnixConn) {
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var req request
	line, err := bufio.NewReaderSize(conn, 512).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	if err != nil {
		s.log.Warn("bad request", "err", err)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	var resp response
	switch req.Op {
	case "status":
		resp.State = &s.state
		select {
		case <-s.exited:
			resp.Exited = &s.exit
		default:
		}
	case "wait":
		// Until the container has exited (its cleanup may still run), or
		// the client hangs up.
		hangup := make(chan struct{})
		go func() {
			var b [1]byte
			_, _ = conn.Read(b[:])
			close(hangup)
		}()
		select {
		case <-s.exited:
			resp.Exit = &s.exit
		case <-hangup:
			return
		}
	case "stop":
		if err := s.c.Stop(req.Grace); err != nil {
			resp.Err = err.Error()
		}
	case "signal":
		if err := s.c.Signal(syscall.Signal(req.Signal)); err != nil {
			resp.Err = err.Error()
		}
	default:
		resp.Err = fmt.Sprintf("unknown op %q", req.Op)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	b, _ := json.Marshal(resp)
	_, _ = conn.Write(append(b, '\n'))
}

// readJSON decodes the file name into v.
func readJSON(name string, v any) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// writeJSON replaces name with v atomically: a temporary file renamed over
// it. Nothing is fsynced (flash wear); see run for why that is enough.
func writeJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := name + ".tmp"
	err = os.WriteFile(tmp, append(b, '\n'), 0o600)
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// viaDirFD calls f with a short name of dir/sock: /proc/self/fd/<fd>/sock,
// valid while f runs.
func viaDirFD(dir string, f func(short string) error) error {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return f(fmt.Sprintf("/proc/self/fd/%d/%s", fd, sockFile))
}

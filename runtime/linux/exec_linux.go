package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-edge/shoal/internal/fds"
	"github.com/shoal-edge/shoal/internal/sealexe"
	"github.com/shoal-edge/shoal/runtime/exit"
)

// Process is a program to run in a running container with Exec.
type Process struct {
	// Args is the argv, looked up as Spec.Args is.
	Args []string
	// Env, Cwd and User default to the container's.
	Env  []string
	Cwd  string
	User string
	// TTY gives the program a new terminal of the container's /dev/pts as
	// its controlling terminal and stdin, stdout and stderr; Stdout then
	// receives both outputs and Stderr is unused.
	TTY bool
	// Stdin may be nil. As in Spec, an *os.File is handed over as is
	// (without TTY); other readers and writers are copied.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Resize, with TTY, sets the terminal's size each time it yields.
	Resize <-chan TermSize
}

// TermSize is a terminal's size in characters.
type TermSize struct {
	Rows, Cols uint16
}

// nsID identifies a namespace: the device and inode of /proc/PID/ns/NAME.
type nsID struct {
	Dev, Ino uint64
}

func nsIDOf(f *os.File) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nsID{}, err
	}
	return nsID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// nsIDsOf returns the ids of pid's mount and pid namespaces.
func nsIDsOf(pid int) ([2]nsID, error) {
	var ids [2]nsID
	for i, name := range []string{"mnt", "pid"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, name))
		if err != nil {
			return ids, fmt.Errorf("namespace id: %w", err)
		}
		ids[i], err = nsIDOf(f)
		f.Close()
		if err != nil {
			return ids, fmt.Errorf("namespace id: %w", err)
		}
	}
	return ids, nil
}

// execNamespaces are the namespaces the helper joins, in order: the mount
// namespace last, as it changes what paths mean.
var execNamespaces = []struct {
	name string
	flag int
}{
	{"cgroup", unix.CLONE_NEWCGROUP}, {"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS},
	{"net", unix.CLONE_NEWNET}, {"mnt", unix.CLONE_NEWNS},
}

// execConfig is what Exec sends its helper.
type execConfig struct {
	Proc       procConfig `json:"proc"`
	Namespaces []nsFD     `json:"namespaces"`
	// ConsoleFD, if not 0, is a unix socket on which the helper sends the
	// master of the terminal it made.
	ConsoleFD int `json:"console_fd,omitempty"`
}

type nsFD struct {
	FD   int `json:"fd"`
	Flag int `json:"flag"`
}

// Exec runs p in the running container c and returns how it ended. The
// program joins the container's mount, pid, uts, ipc, net and cgroup
// namespaces and its cgroup, and is confined as the container's program is
// (capabilities, no_new_privs, seccomp, rlimits; p.User if set).
//
// How: a goroutine locks its OS thread, enters the container's pid
// namespace (which only changes the thread's future children), starts this
// binary again as "__shoal_exec" and returns to its own pid namespace. The helper, moved into the container's cgroup
// before it reads its configuration, unshares its thread's filesystem
// context (setns into a mount namespace needs one no other thread shares),
// joins the other namespaces from descriptors Exec opened, then confines
// itself and execs the program as the container init does. Its binary is
// found through the host's /proc, before it enters the container: nothing
// the container controls is executed with the daemon's privileges.
//
// An error says the program did not start (an *InitError for failures in
// the container; the status then has 126 or 127) or that ctx ended it (SIGKILL).
func (r *Runtime) Exec(ctx context.Context, c *Container, p Process) (exit.Status, error) {
	fail := func(err error) (exit.Status, error) {
		return exit.Status{Code: -1, Err: err}, fmt.Errorf("exec in container %s: %w", c.id, err)
	}
	proc := c.proc
	if len(p.Args) == 0 || p.Args[0] == "" {
		return fail(errors.New("no command (Args is empty)"))
	}
	proc.Args = p.Args
	if p.Env != nil {
		proc.Env = p.Env
	}
	if p.Cwd != "" {
		if !filepath.IsAbs(p.Cwd) {
			return fail(fmt.Errorf("working directory %q must be absolute", p.Cwd))
		}
		proc.Cwd = p.Cwd
	}
	if p.User != "" {
		if err := checkUserSpec(p.User); err != nil {
			return fail(err)
		}
		proc.User = p.User
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	select {
	case <-c.done:
		return fail(errors.New("it is not running"))
	default:
	}

	// Descriptors that go to the helper; closed here once it has them.
	var childFiles []*os.File
	closeChild := func() {
		for _, f := range childFiles {
			f.Close()
		}
		childFiles = nil
	}
	defer closeChild()
	pid := c.Pid()
	openNS := func(name string) (*os.File, error) {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, name))
		if err != nil {
			return nil, fmt.Errorf("open %s namespace: %w", name, err)
		}
		childFiles = append(childFiles, f)
		return f, nil
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer cfgW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return fail(err)
	}
	defer errR.Close()
	childFiles = append(childFiles, cfgR, errW) // fds 3, 4
	cfg := execConfig{Proc: proc}
	var mntNS *os.File
	for _, ns := range execNamespaces {
		if ns.name == "net" && c.hostNetwork {
			continue
		}
		f, err := openNS(ns.name)
		if err != nil {
			return fail(err)
		}
		cfg.Namespaces = append(cfg.Namespaces, nsFD{FD: len(childFiles) + 2, Flag: ns.flag})
		if ns.name == "mnt" {
			mntNS = f
		}
	}
	pidNS, err := os.Open(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		return fail(fmt.Errorf("open pid namespace: %w", err))
	}
	defer pidNS.Close()
	// The pid may have been reused since PID 1 exited: the namespaces
	// must be the container's.
	mntID, err1 := nsIDOf(mntNS)
	pidID, err2 := nsIDOf(pidNS)
	if err := errors.Join(err1, err2); err != nil {
		return fail(err)
	}
	if [2]nsID{mntID, pidID} != c.nsIDs {
		return fail(errors.New("it is not running (its pid belongs to another process)"))
	}
	console := -1
	if p.TTY {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("console socket: %w", err))
		}
		console = fds[0]
		defer unix.Close(console)
		childFiles = append(childFiles, os.NewFile(uintptr(fds[1]), "console"))
		cfg.ConsoleFD = len(childFiles) + 2
	}

	exe, err := sealedSelf()
	if err != nil {
		return fail(fmt.Errorf("start exec helper: %w", err))
	}
	cmd := &exec.Cmd{
		Path:       sealexe.ExecPath(exe), // a handle above the helper's ExtraFiles (sealexe)
		Args:       []string{"shoal", execArg, c.id},
		Env:        fds.HelperEnv,
		ExtraFiles: childFiles,
		WaitDelay:  waitDelay,
	}
	if !p.TTY {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = p.Stdin, p.Stdout, p.Stderr
	}
	started := make(chan error, 1)
	go func() { started <- startInPidNS(cmd, pidNS) }()
	if err := <-started; err != nil {
		return fail(fmt.Errorf("start exec helper: %w", err))
	}
	closeChild()
	ok := false
	defer func() {
		if !ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	// Into the cgroup before the helper reads its config, as in Start.
	if err := c.cg.Add(cmd.Process.Pid); err != nil {
		return fail(err)
	}
	if err := sendConfig(cfgW, cfg); err != nil {
		return fail(err)
	}
	var master *os.File
	if p.TTY {
		m, rerr := recvFD(console)
		if rerr != nil {
			// The helper failed before making the terminal; its
			// error says why.
			if err := awaitExec(ctx, errR); err != nil {
				return r.execFailed(ctx, c, cmd, err)
			}
			return fail(rerr)
		}
		master = m
		defer master.Close()
	}
	if err := awaitExec(ctx, errR); err != nil {
		return r.execFailed(ctx, c, cmd, err)
	}
	ok = true
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	var wg sync.WaitGroup
	exited := make(chan struct{})
	outDone := make(chan struct{})
	if master != nil {
		wg.Go(func() { resize(master, p.Resize, exited) })
		go func() {
			defer close(outDone)
			w := p.Stdout
			if w == nil {
				w = io.Discard
			}
			_, _ = io.Copy(w, master) // EIO once the last slave is closed
		}()
		if p.Stdin != nil {
			// Ends at Stdin's EOF or with the master; like exec.Cmd,
			// a Stdin that never returns is left behind (WaitDelay).
			go func() { _, _ = io.Copy(master, p.Stdin) }()
		}
	} else {
		close(outDone)
	}
	werr := cmd.Wait()
	ex := exitOf(cmd.ProcessState, werr)
	close(exited)
	wg.Wait()
	if master != nil {
		select {
		case <-outDone:
		case <-time.After(waitDelay):
			// A background process still holds the terminal.
		}
		master.Close()
		<-outDone
	}
	if !stop() {
		// ctx ended while the program ran, and killed it.
		return ex, fmt.Errorf("exec in container %s: %w", c.id, ctx.Err())
	}
	c.log.Debug("exec exited", "args", p.Args, "code", ex.Code, "signal", ex.Signal)
	return ex, nil
}

// startInPidNS starts cmd as a child in the pid namespace pidNS. setns
// (CLONE_NEWPID) changes only the pid namespace of the calling thread's
// future children, so it is done on a locked thread and undone after the
// fork. The thread must not die instead: a container's PID 1 forked from it
// would get its parent-death signal. Only if the undo fails is the thread
// left locked to die with the goroutine, the lesser harm.
func startInPidNS(cmd *exec.Cmd, pidNS *os.File) error {
	runtime.LockOSThread()
	own, err := os.Open("/proc/thread-self/ns/pid") // the thread's own, unchanged by setns
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own pid namespace: %w", err)
	}
	defer own.Close()
	if err := unix.Setns(int(pidNS.Fd()), unix.CLONE_NEWPID); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter pid namespace: %w", err)
	}
	err = cmd.Start()
	if rerr := unix.Setns(int(own.Fd()), unix.CLONE_NEWPID); rerr == nil {
		runtime.UnlockOSThread()
	}
	return err
}

// execFailed reaps a helper that could not exec the program, or whose
// exec ctx gave up waiting for.
func (r *Runtime) execFailed(ctx context.Context, c *Container, cmd *exec.Cmd, err error) (exit.Status, error) {
	if ctx.Err() != nil {
		// ctx ended before the exec was confirmed: the program may be
		// running by now, and nothing else would end it.
		_ = cmd.Process.Kill()
	}
	werr := cmd.Wait()
	ex := exitOf(cmd.ProcessState, werr)
	return ex, fmt.Errorf("exec in container %s: %w", c.id, err)
}

// resize applies each size from sizes to the terminal until exited.
func resize(master *os.File, sizes <-chan TermSize, exited <-chan struct{}) {
	if sizes == nil {
		return
	}
	for {
		select {
		case <-exited:
			return
		case sz, ok := <-sizes:
			if !ok {
				return
			}
			ws := &unix.Winsize{Row: sz.Rows, Col: sz.Cols}
			if rc, err := master.SyscallConn(); err == nil {
				_ = rc.Control(func(fd uintptr) { _ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws) })
			}
		}
	}
}

// recvFD receives one descriptor sent with SCM_RIGHTS on sock.
func recvFD(sock int) (*os.File, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("receive terminal: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive terminal: the helper sent none (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("receive terminal: %v", err)
	}
	// Non-blocking, so that reads go through the poller and Close
	// interrupts them.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("receive terminal: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "pty"), nil
}

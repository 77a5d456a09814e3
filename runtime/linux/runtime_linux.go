package linux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-edge/shoal/internal/fds"
	"github.com/shoal-edge/shoal/internal/sealexe"
	"github.com/shoal-edge/shoal/runtime/cgroup"
	"github.com/shoal-edge/shoal/runtime/rootfs"
	"golang.org/x/sys/unix"
)

// Runtime starts containers. Its methods may be called concurrently for
// different containers.
type Runtime struct {
	cfg    Config
	log    *slog.Logger
	spares spares
}

// New returns a Runtime keeping its state under cfg.StateDir, which it
// creates.
func New(cfg Config) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "shoal"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("linux runtime: state dir: %w", err)
	}
	r := &Runtime{cfg: cfg, log: cfg.Logger}
	r.spares.init(r)
	return r, nil
}

// stateDir is the container's directory; its rootfs lives in stateDir/rootfs.
func (r *Runtime) stateDir(id string) string { return filepath.Join(r.cfg.StateDir, id) }

// waitDelay bounds how long Wait keeps copying a non-file Stdin/Stdout/Stderr
// after the container exited, so a Stdin that never ends cannot hang it.
const waitDelay = 2 * time.Second

// Start creates and starts the container s and returns once its program has
// been exec'd. If that fails, the error says why (an *InitError for failures
// inside the container) and everything created is removed. ctx bounds the
// start only, not the container's life.
//
// With Config.OneOffPrefix set, an empty s.ID makes a one-off container:
// the runtime names it and may start it on a spare init (see spare).
func (r *Runtime) Start(ctx context.Context, s Spec) (_ *Container, err error) {
	var sp *spare
	oneOff := s.ID == "" && r.cfg.OneOffPrefix != ""
	if oneOff {
		sp = r.spares.take(s)
		defer r.spares.replenish()
		if sp != nil {
			s.ID = sp.id
			// Until undo owns it, a failure must not leave it behind.
			defer func() {
				if sp != nil {
					r.discard(sp)
				}
			}()
		} else {
			s.ID = r.oneOffID()
		}
	}
	if sp == nil {
		cgroup.WarmMigration() // first: it overlaps all that follows until cg.Add
	}
	s, err = s.normalize()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	log := r.log.With("container", s.ID)
	dir := r.stateDir(s.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("start container %s: it already exists (state dir %s); delete it first", s.ID, dir)
		}
		return nil, fmt.Errorf("start container %s: state dir: %w", s.ID, err)
	}
	// undo holds the cleanups of what exists so far, run in reverse on error.
	var undo []func() error
	defer func() {
		if err == nil {
			return
		}
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil {
				log.Error("clean up after failed start", "err", uerr)
			}
		}
	}()
	undo = append(undo, func() error { return os.Remove(dir) })
	etc, err := writeEtcFiles(dir, s)
	undo = append(undo, func() error { return removeEtcFiles(dir) })
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}

	for _, m := range s.Mounts {
		if m.Populate {
			if err := populateVolume(s.Image, m); err != nil {
				return nil, fmt.Errorf("start container %s: %w", s.ID, err)
			}
		}
	}

	var cg *cgroup.Cgroup
	if sp != nil {
		cg = sp.cg
	} else if cg, err = cgroup.New(r.cfg.CgroupParent, s.ID, s.Resources); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	undo = append(undo, cg.Delete)

	fsDir := filepath.Join(dir, "rootfs")
	var merged, overlay string
	if sp != nil {
		merged, overlay, err = rootfs.PrepareOverlay(s.Image, fsDir)
	} else {
		merged, err = rootfs.MountWith(s.Image, fsDir, rootfs.Options{Logger: log})
	}
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	undo = append(undo, func() error { return rootfs.Unmount(fsDir) })
	if oneOff && sp == nil {
		// Spares mount their overlay themselves: only where one works.
		if isCopy, err := rootfs.IsCopy(fsDir); err == nil && !isCopy {
			r.spares.overlayOK.Store(true)
		}
	}
	// overlayfs shows its upper dir's mode for /, and rootfs makes that
	// 0700: a user other than root could not walk the container's /.
	// Give / the image's mode. (PrepareOverlay gives it to upper.)
	if fi, err := os.Stat(s.Image); err == nil && sp == nil {
		if err := os.Chmod(merged, fi.Mode().Perm()); err != nil {
			return nil, fmt.Errorf("start container %s: mode of /: %w", s.ID, err)
		}
	}

	var l *launch
	if sp != nil {
		l = sp.l
		sp.stdout.set(s.Stdout)
		sp.stderr.set(s.Stderr)
		sp = nil // from here on undo owns it
	} else if l, err = launchInit(s, cg); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	undo = append(undo, func() error { l.kill(); return nil })
	if err := writeConfig(l.cfgW, initConfig{
		Rootfs: merged, Overlay: overlay, Hostname: s.Hostname, HostNetwork: s.HostNetwork,
		ReadOnlyRootfs: s.ReadOnlyRootfs, Mounts: append(etc, s.Mounts...), Proc: procOf(s),
	}); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, initFailed(ctx, l.errR, err))
	}
	select {
	case <-l.placed:
	case <-ctx.Done():
		return nil, fmt.Errorf("start container %s: %w", s.ID, ctx.Err())
	}
	if l.placeErr != nil {
		// An init that failed by itself (the move then finds no
		// process) has the better error.
		if l.exited() {
			return nil, fmt.Errorf("start container %s: %w", s.ID, initFailed(ctx, l.errR, l.placeErr))
		}
		return nil, fmt.Errorf("start container %s: %w", s.ID, l.placeErr)
	}
	if _, err := l.cfgW.Write([]byte{placedByte}); err != nil {
		err = fmt.Errorf("tell the container init it is in its cgroup: %w", err)
		return nil, fmt.Errorf("start container %s: %w", s.ID, initFailed(ctx, l.errR, err))
	}
	_ = l.cfgW.Close()
	err = awaitExec(ctx, l.errR)
	_ = l.errR.Close()
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	c := &Container{
		id: s.ID, cmd: l.cmd, cg: cg, rt: r, log: log, done: make(chan struct{}),
		proc: procOf(s), hostNetwork: s.HostNetwork, nsIDs: l.ids, mntNS: l.mntNS,
	}
	if l.remote != nil {
		// Another process's child: it reaps, stops and deletes.
		p, _ := os.FindProcess(l.pid)
		c.cmd = &exec.Cmd{Process: p}
	} else {
		go c.reap()
	}
	log.Info("container started", "pid", l.pid, "image", s.Image, "args", s.Args)
	return c, nil
}

// launch is a container init forked in its namespaces and on its way into
// its cgroup; it waits for its config. It is our child (cmd), or another
// process's (remote; see Spec.Forker).
type launch struct {
	pid        int
	cmd        *exec.Cmd
	remote     RemoteInit
	cfgW, errR *os.File
	ids        [2]nsID  // the namespaces' identity, for Exec
	mntNS      *os.File // held: see Container.mntNS

	placed   chan struct{} // closed once the move into the cgroup is done
	placeErr error         // written before placed is closed
}

// launchInit forks the init of s and starts moving it into cg. Moving a
// process into a cgroup may have to wait for the end of the kernel grace
// period WarmMigration started: it runs while the caller sends the config
// and the init starts and builds the container's filesystem. The init waits
// for placedByte before anything of the container's runs, so nothing does
// outside its limits. On cgroup v2 the init is born in its cgroup.
func launchInit(s Spec, cg *cgroup.Cgroup) (*launch, error) {
	l, inCgroup, err := startInit(s, cg.UnifiedDir())
	if err != nil {
		return nil, err
	}
	l.placed = make(chan struct{})
	if inCgroup {
		close(l.placed)
	} else {
		go func() { l.placeErr = cg.Add(l.pid); close(l.placed) }()
	}
	// Read while the init surely lives: it waits for its config.
	if l.ids, err = nsIDsOf(l.pid); err == nil {
		l.mntNS, err = os.Open(fmt.Sprintf("/proc/%d/ns/mnt", l.pid))
	}
	if err != nil {
		l.kill()
		return nil, fmt.Errorf("namespaces of the container init: %w", err)
	}
	return l, nil
}

// exited reports whether the init has ended (a child of ours stays
// waitable: its Wait is still to come).
func (l *launch) exited() bool {
	if l.remote != nil {
		select {
		case <-l.remote.Exited():
			return true
		default:
			return false
		}
	}
	var info unix.Siginfo // stays zero while it runs
	err := unix.Waitid(unix.P_PID, l.pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err != nil || info.Signo != 0
}

// kill ends an init that is not to become a container, and waits until it
// is out of its cgroup's way.
func (l *launch) kill() {
	if l.remote != nil {
		l.remote.Kill()
	} else {
		_ = l.cmd.Process.Kill()
		_ = l.cmd.Wait()
	}
	if l.placed != nil {
		<-l.placed
	}
	_ = l.cfgW.Close()
	_ = l.errR.Close()
	if l.mntNS != nil {
		_ = l.mntNS.Close()
	}
}

// startInit forks the container init in its new namespaces: a launch with
// the parent's ends of the config pipe (to write) and the error pipe (to
// read), and whether the init was started inside cgroupDir (a cgroup v2
// directory, or ""), which needs clone3 (Linux 5.7).
func startInit(s Spec, cgroupDir string) (l *launch, inCgroup bool, err error) {
	var cgroupDirFile *os.File
	if cgroupDir != "" {
		if fd, err := unix.Open(cgroupDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			cgroupDirFile = os.NewFile(uintptr(fd), cgroupDir)
			defer cgroupDirFile.Close()
		}
	}
	if s.Forker != nil {
		return forkRemote(s, cgroupDirFile)
	}
	if cgroupDirFile != nil {
		if l, err := forkInit(s, int(cgroupDirFile.Fd())); err == nil {
			return l, true, nil
		}
		// An older kernel: fall back to moving the init in.
	}
	l, err = forkInit(s, -1)
	return l, false, err
}

// initPipes makes the config and error pipes of an init: the child's ends
// first.
func initPipes() (cfgR, cfgW, errR, errW *os.File, err error) {
	cfgR, cfgW, err = os.Pipe()
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("config pipe: %w", err)
	}
	errR, errW, err = os.Pipe()
	if err != nil {
		cfgR.Close()
		cfgW.Close()
		return nil, nil, nil, nil, fmt.Errorf("error pipe: %w", err)
	}
	return cfgR, cfgW, errR, errW, nil
}

// cloneFlags are the namespaces of s's init.
func cloneFlags(s Spec) uintptr {
	flags := syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC
	if !s.HostNetwork {
		flags |= syscall.CLONE_NEWNET
	}
	return uintptr(flags)
}

// initArgs is an init's argv: the id names it in ps until it execs.
func initArgs(s Spec) []string { return []string{"shoal", initArg, s.ID} }

// forkInit starts the init as our child; cgroupFD >= 0 starts it in that
// cgroup.
func forkInit(s Spec, cgroupFD int) (*launch, error) {
	exe, err := sealedSelf()
	if err != nil {
		return nil, fmt.Errorf("fork container init: %w", err)
	}
	cfgR, cfgW, errR, errW, err := initPipes()
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:       sealexe.ExecPath(exe), // this very binary, sealed
		Args:       initArgs(s),
		Env:        fds.HelperEnv, // the program's env travels in the config
		Stdin:      s.Stdin,
		Stdout:     s.Stdout,
		Stderr:     s.Stderr,
		ExtraFiles: []*os.File{cfgR, errW}, // fds 3 and 4: configFD, errorFD
		WaitDelay:  waitDelay,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  cloneFlags(s),
			Pdeathsig:   syscall.SIGKILL,
			UseCgroupFD: cgroupFD >= 0,
			CgroupFD:    max(cgroupFD, 0),
		},
	}
	onForkThread(func() { err = cmd.Start() })
	// The child holds its own copies; ours must go, or EOF never comes.
	cfgR.Close()
	errW.Close()
	if err != nil {
		cfgW.Close()
		errR.Close()
		return nil, fmt.Errorf("fork container init: %w", err)
	}
	return &launch{pid: cmd.Process.Pid, cmd: cmd, cfgW: cfgW, errR: errR}, nil
}

// forkRemote has s.Forker fork the init; cgroupDir, if not nil, is the
// cgroup v2 directory to start it in.
func forkRemote(s Spec, cgroupDir *os.File) (*launch, bool, error) {
	exe, err := sealedSelf()
	if err != nil {
		return nil, false, fmt.Errorf("fork container init: %w", err)
	}
	cfgR, cfgW, errR, errW, err := initPipes()
	if err != nil {
		return nil, false, err
	}
	ri, err := s.Forker.ForkInit(InitFork{
		Args: initArgs(s), Exe: exe, Config: cfgR, Errors: errW, Cloneflags: cloneFlags(s), Cgroup: cgroupDir,
	})
	cfgR.Close()
	errW.Close()
	if err != nil {
		cfgW.Close()
		errR.Close()
		return nil, false, fmt.Errorf("fork container init: %w", err)
	}
	return &launch{pid: ri.Pid(), remote: ri, cfgW: cfgW, errR: errR}, ri.InCgroup(), nil
}

// forkThread runs the forks of container inits on one OS thread that never
// exits. The kernel sends an init its parent-death signal when the thread
// that forked it ends, not the process, and Go does end threads: a
// goroutine that exits locked to its thread takes the thread along (the
// health checks' throw-away threads in other network namespaces do).
var forkThread struct {
	once sync.Once
	reqs chan func()
}

func onForkThread(f func()) {
	forkThread.once.Do(func() {
		forkThread.reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // for good
			for f := range forkThread.reqs {
				f()
			}
		}()
	})
	done := make(chan struct{})
	forkThread.reqs <- func() { defer close(done); f() }
	<-done
}

// placedByte follows an init's config once the init is in its cgroup.
const placedByte = '!'

// writeConfig sends cfg to an init or exec helper.
func writeConfig(w *os.File, cfg any) error {
	if err := json.NewEncoder(w).Encode(cfg); err != nil {
		return fmt.Errorf("send config to container init: %w", err)
	}
	return nil
}

// sendConfig sends cfg and closes w: all an exec helper reads.
func sendConfig(w *os.File, cfg any) error {
	err := writeConfig(w, cfg)
	if cerr := w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("send config to container init: %w", cerr)
	}
	return err
}

// initFailed is the error of a failed write to an init's config pipe: the
// init's own, if it exited (which closes the pipe), else err.
func initFailed(ctx context.Context, errR *os.File, err error) error {
	if ierr := awaitExec(ctx, errR); ierr != nil {
		return ierr
	}
	return fmt.Errorf("the container init ended without saying why (killed?): %w", err)
}

// maxInitError bounds what awaitExec reads from an error pipe: an
// InitError is a line of JSON, and the pipe's other end runs in the
// container, so it is not trusted to stop.
const maxInitError = 16 << 10

// awaitExec reads the error pipe: EOF without data means the exec closed it,
// data is the init's InitError. ctx cancels the wait. More than
// maxInitError bytes are no InitError: the start of them is the error, the
// rest is left unread.
func awaitExec(ctx context.Context, errR *os.File) error {
	stop := context.AfterFunc(ctx, func() { _ = errR.SetReadDeadline(time.Now()) })
	defer stop()
	b, err := io.ReadAll(io.LimitReader(errR, maxInitError+1))
	if len(b) > maxInitError {
		return fmt.Errorf("container init failed: %s ... [more than %d bytes on its error pipe; the rest dropped]",
			bytes.ToValidUTF8(bytes.TrimSpace(b[:512]), []byte("?")), maxInitError)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for the container init: %w", ctx.Err())
		}
		return fmt.Errorf("read container init errors: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	ie := &InitError{}
	if err := json.Unmarshal(b, ie); err != nil {
		return fmt.Errorf("container init failed: %s", bytes.TrimSpace(b))
	}
	return ie
}

// Cleanup removes what a previous daemon left behind after dying without
// deleting its containers: for every container directory in StateDir and
// every cgroup under CgroupParent whose id keep rejects, it kills the
// processes, unmounts the rootfs and removes cgroup and directory. keep says
// which containers still have an owner (a live monitor); nil keeps none.
// Call it at daemon start, before the first Start; with a keep that rejects
// one id only, it removes the leftovers of that one container.
func (r *Runtime) Cleanup(keep func(id string) bool) error {
	ids := map[string]bool{}
	ents, err := os.ReadDir(r.cfg.StateDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clean up containers: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() && ValidID(e.Name()) {
			ids[e.Name()] = true
		}
	}
	groups, err := cgroup.List(r.cfg.CgroupParent)
	if err != nil {
		return fmt.Errorf("clean up containers: %w", err)
	}
	for _, id := range groups {
		ids[id] = true
	}
	var errs []error
	for id := range ids {
		if keep != nil && keep(id) {
			continue
		}
		r.log.Info("removing leftover container", "container", id)
		if err := r.remove(id, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// OOMKilled reports whether the kernel's OOM killer killed a process of
// container id, which exists until it is removed: how a monitor's daemon
// completes the exit the monitor reports.
func (r *Runtime) OOMKilled(id string) (bool, error) {
	cg, err := cgroup.Load(r.cfg.CgroupParent, id)
	if err != nil {
		return false, err
	}
	return cg.OOMKilled()
}

// Close removes the runtime's parent cgroup once every container is
// deleted: after the daemon stops, no cgroup of it remains.
func (r *Runtime) Close() error {
	r.spares.close()
	return cgroup.RemoveParent(r.cfg.CgroupParent)
}

// remove kills and removes the container id's cgroup, rootfs and state dir;
// cg is loaded when nil. Missing parts are fine.
func (r *Runtime) remove(id string, cg *cgroup.Cgroup) error {
	var errs []error
	if cg == nil {
		var err error
		cg, err = cgroup.Load(r.cfg.CgroupParent, id)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// Processes first: they keep the mounts busy.
	if cg != nil {
		if err := cg.Delete(); err != nil {
			errs = append(errs, err)
		}
	}
	dir := r.stateDir(id)
	if err := rootfs.Unmount(filepath.Join(dir, "rootfs")); err != nil {
		// Never RemoveAll over a mount: it would delete through it.
		return errors.Join(append(errs, fmt.Errorf("remove container %s: %w", id, err))...)
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("remove container %s: %w", id, err))
	}
	return errors.Join(errs...)
}

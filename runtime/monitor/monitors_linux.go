package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	ahead "github.com/shoal-edge/shoal/internal/spare"
	"github.com/shoal-edge/shoal/runtime/exit"
	"github.com/shoal-edge/shoal/runtime/linux"
	"github.com/shoal-edge/shoal/runtime/monitor/ctl"
)

// Config configures Monitors.
type Config struct {
	// StateDir holds one directory per monitor (DATA/monitors).
	StateDir string
	// RuntimeStateDir and CgroupParent are the linux.Runtime's settings,
	// the same as the daemon's own runtime (DATA/containers).
	RuntimeStateDir string
	CgroupParent    string
	// Logger receives the daemon side's logs; discarded when nil.
	Logger *slog.Logger
	// Program is the monitor program to run; empty runs the one embedded
	// in this binary (tests run one they built).
	Program string
	// AdoptPatience bounds Adopt's wait for a monitor that is alive (it
	// holds its lock) but does not answer yet; 60 s when zero.
	AdoptPatience time.Duration
	// Spare keeps a monitor process started ahead of time, once a first
	// Start has been made, for the next Start: a restarted container
	// then does not wait for a monitor's exec and start. Close removes
	// it.
	Spare bool
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("monitors: StateDir %q must be an absolute path", c.StateDir)
	}
	if c.RuntimeStateDir == "" || !filepath.IsAbs(c.RuntimeStateDir) {
		return fmt.Errorf("monitors: RuntimeStateDir %q must be an absolute path", c.RuntimeStateDir)
	}
	return nil
}

// Monitors starts and adopts container monitors. Its methods may be called
// concurrently, except Adopt, which runs once before the first Start.
type Monitors struct {
	cfg Config
	log *slog.Logger
	rt  *linux.Runtime // for removing what a dead monitor left

	spare ahead.One[*monitorProc] // Config.Spare

	programFile func() (string, error) // made once, where memfds may not run
}

// New returns Monitors keeping their state under cfg.StateDir, which it
// creates.
func New(cfg Config) (*Monitors, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Program == "" {
		if err := HasProgram(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("monitors: state dir: %w", err)
	}
	rt, err := linux.New(linux.Config{StateDir: cfg.RuntimeStateDir, CgroupParent: cfg.CgroupParent, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	m := &Monitors{cfg: cfg, log: cfg.Logger.With("component", "monitor"), rt: rt}
	m.programFile = sync.OnceValues(m.writeProgramFile)
	m.spare = ahead.One[*monitorProc]{
		Make:    func() (*monitorProc, error) { return m.startMonitor(spareArgv2(cfg.StateDir)) },
		Discard: (*monitorProc).discard,
		OnError: func(err error) { m.log.Warn("start a spare monitor", "err", err) },
	}
	return m, nil
}

func (m *Monitors) dir(id string) string { return filepath.Join(m.cfg.StateDir, id) }

// Owns reports whether a monitor (live, or dead with an exit not yet
// collected) owns container id: pass it to linux.Runtime.Cleanup so that the
// daemon's start leaves monitored containers alone.
func (m *Monitors) Owns(id string) bool {
	_, err := os.Stat(m.dir(id))
	return err == nil
}

func (m *Monitors) patience() time.Duration {
	if m.cfg.AdoptPatience > 0 {
		return m.cfg.AdoptPatience
	}
	return 60 * time.Second
}

// takeLock creates and locks dir/lock; the lock is held as long as any
// process keeps the returned file open.
func takeLock(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("monitor lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("monitor lock: %w", err)
	}
	return f, nil
}

// lockHeld reports whether a process (a live monitor) holds dir's lock.
func lockHeld(dir string) bool {
	f, err := os.Open(filepath.Join(dir, lockFile))
	if err != nil {
		return false // no lock file: a monitor that never started
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// Start starts the container s under a monitor process and returns once
// the container runs. If it does not start, the error says why (it wraps a
// *linux.InitError for failures inside the container) and nothing is left
// behind. ctx bounds the start only.
//
// The daemon does the work of the start (cgroup, filesystem, the init's
// config) through its runtime; the monitor forks the init, so that it is
// the container's parent (linux.Spec.Forker).
func (m *Monitors) Start(ctx context.Context, s Spec) (_ *Handle, err error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	if m.cfg.Spare {
		// Once this start is over: the next spare's own start would
		// take CPU from this one.
		defer m.spare.Replenish()
	}
	dir := m.dir(s.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("start container %s: a monitor for it exists (%s)", s.ID, dir)
		}
		return nil, fmt.Errorf("start container %s: monitor dir: %w", s.ID, err)
	}
	var mp *monitorProc
	defer func() {
		if err == nil {
			return
		}
		// The monitor exits once its socket closes, and its init (if
		// any) dies with it (parent-death signal); then sweep.
		if mp != nil {
			mp.discard()
		}
		if rerr := m.removeLeftovers(s.ID); rerr != nil {
			m.log.Error("clean up after failed start", "container", s.ID, "err", rerr)
		}
	}()
	doc := specDoc{Spec: s, RuntimeStateDir: m.cfg.RuntimeStateDir, CgroupParent: m.cfg.CgroupParent}
	if err := writeJSON(filepath.Join(dir, specFile), doc); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	if s.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(s.LogPath), 0o700); err != nil {
			return nil, fmt.Errorf("start container %s: log dir: %w", s.ID, err)
		}
	}
	// The monitor gets the lock and the listening socket and holds them
	// until it exits.
	lock, err := takeLock(dir)
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	defer lock.Close()
	ln, err := listen(dir)
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	defer ln.Close()
	if mp, err = m.monitorFor(dir); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	ls := s.Spec
	fk := &forker{m: m, mp: mp, fds: []*os.File{lock, ln}, start: ctl.Start{Dir: dir, LogPath: s.LogPath, LogMaxSize: s.LogMaxSize, LogKeep: s.LogKeep}}
	ls.Forker = fk
	c, err := m.rt.Start(ctx, ls)
	mp = fk.mp
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Release()
		}
	}()
	st := stateDoc{MonitorPid: mp.pid(), Pid: c.Pid(), StartedAt: time.Now().UTC()}
	stateJSON, _ := json.Marshal(st)
	if err := writeJSON(filepath.Join(dir, stateFile), st); err != nil {
		// The container runs: better a monitor without state.json
		// (status still answers) than killing it.
		m.log.Warn("write monitor state", "container", s.ID, "err", err)
	}
	// The wait stream before Started, while the socket surely exists: the
	// monitor of a program that has already ended records the exit and
	// unlinks the socket right after Started. The connection waits in the
	// listen backlog; if the monitor exits without serving it, the handle
	// reads exit.json.
	h, err := m.connect(s, st, mp.reaped)
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	if err := mp.started(stateJSON); err != nil {
		h.Close()
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	h.ctr = c
	m.log.Info("container started", "container", s.ID, "pid", st.Pid, "monitor_pid", st.MonitorPid)
	return h, nil
}

// listen makes the monitor's listening socket, dir/sock. The state dir's
// path may be longer than a sockaddr allows (108 bytes): bind through
// /proc/self/fd.
func listen(dir string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("monitor socket: %w", err)
	}
	ln := os.NewFile(uintptr(fd), "monitor socket")
	err = viaDirFD(dir, func(short string) error {
		if err := unix.Bind(fd, &unix.SockaddrUnix{Name: short}); err != nil {
			return err
		}
		return unix.Listen(fd, 16)
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("monitor socket: %w", err)
	}
	return ln, nil
}

// withOOM completes the exit a monitor reported for container id: whether
// the OOM killer ended it, which the container's cgroup (removed only by
// Delete) still tells.
func (m *Monitors) withOOM(id string, ex exit.Status) exit.Status {
	if oom, err := m.rt.OOMKilled(id); err == nil && oom {
		ex.OOMKilled = true
	}
	return ex
}

// removeLeftovers removes monitor id's state dir and what its container may
// have left (mounts, cgroup, state dir).
func (m *Monitors) removeLeftovers(id string) error {
	var errs []error
	if err := m.rt.Cleanup(func(c string) bool { return c != id }); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(m.dir(id)); err != nil {
		errs = append(errs, fmt.Errorf("remove monitor dir: %w", err))
	}
	return errors.Join(errs...)
}

// Adopt finds the monitors a previous daemon started. A live monitor yields
// a Handle connected to it; a dead one that recorded its container's exit a
// Handle whose Wait returns that exit at once; a dead one without a record
// has what it left removed and yields a Handle whose exit has Err set. Call
// it once at daemon start, before Start and before the runtime's Cleanup.
func (m *Monitors) Adopt() ([]*Handle, error) {
	ents, err := os.ReadDir(m.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("adopt monitors: %w", err)
	}
	var hs []*Handle
	var errs []error
	for _, e := range ents {
		if !e.IsDir() || !linux.ValidID(e.Name()) {
			continue
		}
		h, err := m.adopt(e.Name())
		if err != nil {
			errs = append(errs, err)
		}
		if h != nil {
			hs = append(hs, h)
		}
	}
	slices.SortFunc(hs, func(a, b *Handle) int { return cmpString(a.id, b.id) })
	return hs, errors.Join(errs...)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (m *Monitors) adopt(id string) (*Handle, error) {
	dir := m.dir(id)
	log := m.log.With("container", id)
	var doc specDoc
	if err := readJSON(filepath.Join(dir, specFile), &doc); err != nil {
		// A start that died before it began: nothing to report.
		log.Warn("monitor dir without spec; removing it", "err", err)
		return nil, m.removeLeftovers(id)
	}
	// A monitor holds its dir's lock for life: while it is held the
	// monitor lives, however slowly it answers (a big image being copied
	// under a daemon killed mid-start), and its container must not be
	// cleaned up.
	alive := lockHeld(dir)
	deadline := time.Now().Add(5 * time.Second)
	if alive {
		deadline = time.Now().Add(m.patience())
	}
	for {
		if resp, err := request1(dir, request{Op: "status"}, 5*time.Second); err == nil && resp.State != nil {
			h, err := m.connect(doc.Spec, *resp.State, nil)
			if err == nil {
				log.Info("adopted running container", "pid", h.pid, "monitor_pid", h.monitorPid)
				return h, nil
			}
			// It went away between the two connections: see below.
			break
		}
		if !lockHeld(dir) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling a live monitor that is busy starting
	}
	if lockHeld(dir) {
		// Alive but not answering: leave it (and its container) alone.
		return nil, fmt.Errorf("container %s: its monitor is alive but did not answer within %v; left alone", id, m.patience())
	}
	var st stateDoc
	_ = readJSON(filepath.Join(dir, stateFile), &st)
	var ed exitDoc
	if err := readJSON(filepath.Join(dir, exitFile), &ed); err == nil {
		log.Info("container exited while no daemon ran", "code", ed.Code, "exited_at", ed.ExitedAt)
		return m.exitedHandle(doc.Spec, st, m.withOOM(id, ed.exit())), nil
	}
	// The monitor died without recording an exit: its container died with
	// it (parent-death signal); remove what they left.
	err := m.rt.Cleanup(func(c string) bool { return c != id })
	ex := exit.Status{Code: -1, Err: fmt.Errorf("container %s: its monitor (pid %d) died without recording the exit", id, st.MonitorPid)}
	log.Warn("monitor died", "err", ex.Err)
	return m.exitedHandle(doc.Spec, st, ex), err
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
// it. Nothing is fsynced (flash wear): after a power cut every container
// is dead anyway.
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
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return f(fmt.Sprintf("/proc/self/fd/%d/%s", fd, sockFile))
}

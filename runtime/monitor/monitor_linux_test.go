package monitor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/runtime/cgroup"
	"github.com/shoal-edge/shoal/runtime/linux"
	"github.com/shoal-edge/shoal/runtime/logs"
	"github.com/shoal-edge/shoal/runtime/supervise"
	"golang.org/x/sys/unix"
)

// TestOutlivesDaemon: the container runs under its monitor, survives the
// "daemon" letting go of it, is adopted by a new one with the same pid and
// is stopped through the adopted handle.
func TestOutlivesDaemon(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	spec := testSpec(t, cfg, "sleep")
	h := mustStart(t, m, spec)
	if h.Pid() == 0 || !alive(h.Pid()) || !alive(h.MonitorPid()) {
		t.Fatalf("pid %d, monitor %d: not running", h.Pid(), h.MonitorPid())
	}
	// A grandchild of the "daemon", through its monitor.
	if got := ppid(t, h.Pid()); got != h.MonitorPid() {
		t.Errorf("container's parent is %d, want the monitor %d", got, h.MonitorPid())
	}
	if got := ppid(t, h.MonitorPid()); got != os.Getpid() {
		t.Errorf("monitor's parent is %d, want the test %d", got, os.Getpid())
	}
	// Both streams land in the log.
	waitFor(t, "output in the log", func() error {
		b, err := tailLog(spec.LogPath, -1)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), "hello stdout\n") || !strings.Contains(string(b), "hello stderr\n") {
			return fmt.Errorf("log is %q", b)
		}
		return nil
	})

	// The daemon dies: it lets go of every connection without stopping.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if ex := h.Wait(); !errors.Is(ex.Err, ErrReleased) {
		t.Errorf("Wait after Close = %+v, want ErrReleased", ex)
	}
	if !alive(h.Pid()) || !alive(h.MonitorPid()) {
		t.Fatal("container or monitor died with the daemon's connection")
	}

	// A new daemon adopts it.
	m2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !m2.Owns(spec.ID) || m2.Owns("other") {
		t.Error("Owns is wrong")
	}
	hs, err := m2.Adopt()
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 {
		t.Fatalf("adopted %d, want 1", len(hs))
	}
	a := hs[0]
	if a.ID() != spec.ID || a.Pid() != h.Pid() || a.MonitorPid() != h.MonitorPid() || !a.StartedAt().Equal(h.StartedAt()) {
		t.Errorf("adopted %s pid %d monitor %d started %v; want %s %d %d %v",
			a.ID(), a.Pid(), a.MonitorPid(), a.StartedAt(), spec.ID, h.Pid(), h.MonitorPid(), h.StartedAt())
	}
	if diff := cmp.Diff(spec, a.Spec()); diff != "" {
		t.Errorf("adopted spec (-want +got):\n%s", diff)
	}
	select {
	case <-a.Done():
		t.Fatalf("adopted handle done: %+v", a.Wait())
	default:
	}
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ex := a.Wait()
	if ex.Code != 137 || ex.Signal != syscall.SIGKILL || ex.Err != nil {
		t.Errorf("exit %+v, want SIGKILL", ex)
	}
	if err := a.Delete(); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	assertGone(t, cfg, spec.ID)
	waitFor(t, "monitor exits", func() error {
		if alive(h.MonitorPid()) {
			return errors.New("still running")
		}
		return nil
	})
}

func TestStopThroughAdoptedHandle(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	spec := testSpec(t, cfg, "ignore")
	startReleased(t, m, spec)
	hs := adopt(t, cfg, 1)
	// It ignores SIGTERM (once it says so): killed after the grace.
	waitForLog(t, spec, "ignoring SIGTERM")
	begin := time.Now()
	if err := hs[0].Stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 200*time.Millisecond {
		t.Errorf("Stop returned after %v, before the grace", d)
	}
	if ex := hs[0].Wait(); ex.Code != 137 {
		t.Errorf("exit %+v, want 137", ex)
	}
	deleteGone(t, cfg, hs[0])
}

// TestExitWhileNoDaemon: the container exits while nobody is connected; the
// monitor records it and exits; the next daemon learns the code.
func TestExitWhileNoDaemon(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	spec := testSpec(t, cfg, "term")
	h := mustStart(t, m, spec)
	waitForLog(t, spec, "waiting for SIGTERM")
	h.Close()
	if err := syscall.Kill(h.Pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "monitor exits", func() error {
		if alive(h.MonitorPid()) {
			return errors.New("monitor still running")
		}
		return nil
	})
	hs := adopt(t, cfg, 1)
	select {
	case <-hs[0].Done():
	default:
		t.Fatal("handle of an exited container is not done")
	}
	if ex := hs[0].Wait(); ex.Code != 7 || ex.Err != nil {
		t.Errorf("exit %+v, want code 7", ex)
	}
	if hs[0].Pid() != h.Pid() || hs[0].Spec().Labels["app"] != "web" {
		t.Errorf("adopted pid %d labels %v", hs[0].Pid(), hs[0].Spec().Labels)
	}
	deleteGone(t, cfg, hs[0])
}

// TestAdoptDeadMonitor: a monitor killed outright takes its container with
// it and records nothing; Adopt removes what they left.
func TestAdoptDeadMonitor(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	spec := testSpec(t, cfg, "sleep")
	h := startReleased(t, m, spec)
	if err := syscall.Kill(h.MonitorPid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "container dies with its monitor", func() error {
		if alive(h.Pid()) {
			return errors.New("container still running")
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(cfg.RuntimeStateDir, spec.ID)); err != nil {
		t.Fatalf("expected leftovers of the container: %v", err)
	}
	hs := adopt(t, cfg, 1)
	ex := hs[0].Wait()
	if ex.Err == nil || ex.Code != -1 {
		t.Errorf("exit %+v, want an error", ex)
	}
	t.Logf("exit of a container whose monitor died: %v", ex.Err)
	// The container's leftovers are gone at Adopt; the monitor dir stays
	// for Delete.
	if _, err := os.Stat(filepath.Join(cfg.RuntimeStateDir, spec.ID)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("container dir after Adopt: %v", err)
	}
	deleteGone(t, cfg, hs[0])
}

func TestStartFailureLeavesNothing(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	spec := testSpec(t, cfg)
	spec.Args = []string{"/no/such/program"}
	_, err := m.Start(t.Context(), spec)
	if err == nil {
		t.Fatal("Start of a missing program succeeded")
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v does not wrap ErrNotExist", err)
	}
	t.Logf("start error: %v", err)
	assertGone(t, cfg, spec.ID)

	// An image that is no rootfs fails before the container init.
	spec.ID += "-b"
	spec.Image = "relative"
	if _, err := m.Start(t.Context(), spec); err == nil {
		t.Error("Start with a bad image succeeded")
	}
	assertGone(t, cfg, spec.ID)
	if _, err := m.Start(t.Context(), Spec{Spec: linux.Spec{ID: "../x", Args: []string{"/app"}}}); err == nil {
		t.Error("Start with a bad id succeeded")
	}
}

func TestLogsRotate(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	spec := testSpec(t, cfg, "spam", "2000")
	spec.LogMaxSize, spec.LogKeep = 4096, 2
	started := time.Now()
	h := mustStart(t, m, spec)
	if ex := h.Wait(); ex.Code != 0 {
		t.Fatalf("exit %+v", ex)
	}
	if err := h.Delete(); err != nil {
		t.Fatal(err)
	}
	// Each line carries the time the monitor wrote it.
	timed, err := tailLogOpts(spec.LogPath, 3, logs.FilterOptions{Timestamps: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSuffix(string(timed), "\n"), "\n") {
		stamp, _, _ := strings.Cut(l, " ")
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil || at.Before(started.Add(-time.Second)) || at.After(time.Now()) {
			t.Errorf("line %q: want the time it was written first (%v)", l, err)
		}
	}
	for _, name := range []string{spec.LogPath, spec.LogPath + ".1"} {
		st, err := os.Stat(name)
		if err != nil || st.Size() > 4096 {
			t.Errorf("%s: %v, %v", name, st, err)
		}
	}
	if _, err := os.Stat(spec.LogPath + ".2"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a third log file: %v", err)
	}
	b, err := tailLog(spec.LogPath, 3)
	if err != nil || string(b) != "line 1997\nline 1998\nline 1999\n" {
		t.Errorf("Tail = %q, %v", b, err)
	}
	assertGone(t, cfg, spec.ID)
}

// TestMonitorRSS measures a monitor's memory and guards against regressions.
// The bounds are for this test binary; see the package doc for the figures
// of the shoal binary.
func TestMonitorRSS(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	spec := testSpec(t, cfg, "sleep")
	h := mustStart(t, m, spec)
	defer h.Delete()
	proc := fmt.Sprintf("/proc/%d/", h.MonitorPid())
	var rss, anon, file, pss int
	measure := func() {
		rss = memKiB(t, proc+"status", "VmRSS")
		anon = memKiB(t, proc+"status", "RssAnon")
		file = memKiB(t, proc+"status", "RssFile") + memKiB(t, proc+"status", "RssShmem")
		pss = memKiB(t, proc+"smaps_rollup", "Pss")
	}
	// Requests exercise the server; its garbage must not pile up.
	for range 200 {
		if _, err := request1(h.dir, request{Op: "status"}, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	measure()
	t.Logf("monitor: VmRSS %d KiB (anon %d, file %d), PSS %d KiB", rss, anon, file, pss)
	if rss >= 3<<10 {
		t.Errorf("monitor VmRSS %d KiB: want under 3 MiB", rss)
	}
	// ps and pgrep find it by name; the container does not inherit an
	// ignored SIGHUP from it.
	if b, _ := os.ReadFile(proc + "comm"); string(b) != "shoal-monitor\n" {
		t.Errorf("monitor comm %q, want shoal-monitor", b)
	}
	if ign := statusField(t, h.Pid(), "SigIgn"); ign&(1<<(syscall.SIGHUP-1)) != 0 {
		t.Errorf("the container starts with SIGHUP ignored (SigIgn %x)", ign)
	}
	// A monitor that works as it should has nothing to say.
	if b, err := os.ReadFile(filepath.Join(cfg.StateDir, spec.ID, monLogFile)); len(b) > 0 {
		t.Errorf("monitor log: %s (%v)", b, err)
	}
}

// TestSuperviseThroughMonitor: the supervision loop on monitors, including
// adoption, and how fast a crashed container runs again.
func TestSuperviseThroughMonitor(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	spec := testSpec(t, cfg, "sleep")
	events := make(chan supervise.Event, 100)
	n := 0
	run := func(ctx context.Context, adopt supervise.Process, detach <-chan struct{}) <-chan error {
		done := make(chan error, 1)
		go func() {
			done <- supervise.Run(ctx, supervise.Config{
				Adopt:  adopt,
				Detach: detach,
				Start: func(ctx context.Context) (supervise.Process, error) {
					n++
					s := spec
					s.ID = fmt.Sprintf("%s-%d", spec.ID, n)
					return m.Start(ctx, s)
				},
				Policy:  supervise.Policy{Restart: supervise.Always},
				Grace:   time.Second,
				OnEvent: func(e supervise.Event) { events <- e },
			})
		}()
		return done
	}
	next := func(state supervise.State) supervise.Event {
		t.Helper()
		select {
		case e := <-events:
			if e.State != state {
				t.Fatalf("event %+v, want %s", e, state)
			}
			return e
		case <-time.After(15 * time.Second):
			t.Fatalf("no %s event within 15s", state)
			return supervise.Event{}
		}
	}
	detach := make(chan struct{})
	done := run(t.Context(), nil, detach)
	next(supervise.Starting)
	first := next(supervise.Running)
	// The daemon shuts down: the loop returns, the container stays.
	close(detach)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !alive(first.Pid) {
		t.Fatal("container stopped on detach")
	}
	hs := adopt(t, cfg, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done = run(ctx, hs[0], nil)
	if e := next(supervise.Running); e.Pid != first.Pid || !e.StartedAt.Equal(first.StartedAt.UTC().Truncate(0)) && !e.StartedAt.Equal(hs[0].StartedAt()) {
		t.Errorf("adopted run %+v, want pid %d", e, first.Pid)
	}
	// Crash it: the first restart is immediate.
	crashed := time.Now()
	if err := syscall.Kill(first.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if e := next(supervise.Exited); e.ExitCode != 137 || e.Err != nil {
		t.Errorf("exit event %+v", e)
	}
	exited := time.Since(crashed)
	next(supervise.Starting)
	e := next(supervise.Running)
	t.Logf("crash to running again through a monitor: %v (exit seen and removed after %v)", time.Since(crashed), exited)
	cancel()
	next(supervise.Exited)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	assertGone(t, cfg, spec.ID+"-1")
	assertGone(t, cfg, spec.ID+"-2")
	if alive(e.Pid) {
		t.Error("container runs after cancel")
	}
}

// A monitor that is alive but does not answer (busy, or stopped) is left
// alone by Adopt, container and all, and adopted once it answers.
func TestAdoptLeavesASilentMonitorAlone(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	spec := testSpec(t, cfg, "sleep")
	h := startReleased(t, m, spec)
	pid, mpid := h.Pid(), h.MonitorPid()
	syscall.Kill(mpid, syscall.SIGSTOP)
	// The signal is delivered asynchronously: wait until the monitor is
	// stopped, or it may still answer.
	testutil.WaitFor(t, 5*time.Second, func() error {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", mpid))
		if err != nil {
			return err
		}
		// "pid (comm) S ...": the state follows the last ')'.
		if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) == 0 || f[0] != "T" {
			return fmt.Errorf("monitor %d not stopped yet", mpid)
		}
		return nil
	})
	cfg.AdoptPatience = 300 * time.Millisecond
	m2, _ := New(cfg)
	hs, err := m2.Adopt()
	syscall.Kill(mpid, syscall.SIGCONT)
	if err == nil || len(hs) != 0 {
		t.Fatalf("Adopt of a silent monitor = %d handles, %v; want none and an error", len(hs), err)
	}
	if syscall.Kill(pid, 0) != nil || !m2.Owns(spec.ID) {
		t.Fatalf("the silent monitor's container was removed (alive %v, owned %v)", syscall.Kill(pid, 0) == nil, m2.Owns(spec.ID))
	}
	hs, err = m2.Adopt()
	if err != nil || len(hs) != 1 || hs[0].Pid() != pid {
		t.Fatalf("Adopt after it answers = %d handles, %v", len(hs), err)
	}
	if err := hs[0].Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	hs[0].Wait()
	deleteGone(t, cfg, hs[0])
}

// A service manager's SIGTERM to the monitor stops its container with the
// usual grace, and the exit is recorded for whoever collects it.
func TestMonitorSIGTERMStopsContainer(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	spec := testSpec(t, cfg, "term")
	h := mustStart(t, m, spec)
	waitForLog(t, spec, "waiting for SIGTERM")
	if err := syscall.Kill(h.MonitorPid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if ex := h.Wait(); ex.Code != 7 || ex.Err != nil {
		t.Errorf("exit %+v, want the workload's own 7 on SIGTERM", ex)
	}
	var ed exitDoc
	if err := readJSON(filepath.Join(cfg.StateDir, spec.ID, exitFile), &ed); err != nil || ed.Code != 7 {
		t.Errorf("exit.json: %+v, %v", ed, err)
	}
	deleteGone(t, cfg, h)
}

// The monitor reports a plain SIGKILL; the daemon's side learns from the
// container's cgroup that the OOM killer sent it.
func TestOOMKillThroughMonitor(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	spec := testSpec(t, cfg, "eat")
	spec.Resources = cgroup.Resources{Memory: 32 << 20}
	h := mustStart(t, m, spec)
	select {
	case <-h.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("allocating program not killed under a 32 MiB limit")
	}
	if ex := h.Wait(); !ex.OOMKilled || ex.Code != 137 {
		t.Errorf("exit %+v, want OOMKilled with code 137", ex)
	}
	deleteGone(t, cfg, h)
}

// A program that ends at once still ran: Start succeeds and the exit is its
// own, however soon the monitor has it (and unlinks its socket).
func TestQuickExit(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	for i := range 40 {
		spec := testSpec(t, cfg, "exit", "3")
		h := mustStart(t, m, spec)
		if ex := h.Wait(); ex.Code != 3 || ex.Err != nil {
			t.Fatalf("start %d: exit %+v, want 3", i, ex)
		}
		deleteGone(t, cfg, h)
	}
}

// Where the kernel refuses executable memfds (vm.memfd_noexec = 2), the
// daemon runs the embedded program from a copy in the state dir.
func TestNoExecMemfd(t *testing.T) {
	testutil.RequireRoot(t)
	if err := HasProgram(); err != nil {
		t.Skip(err)
	}
	if os.Getenv("SHOAL_TEST_MEMFD_NOEXEC") == "" {
		if _, err := os.Stat("/proc/sys/vm/memfd_noexec"); err != nil {
			t.Skip("kernel without vm.memfd_noexec")
		}
		// The setting is per pid namespace: run this test again in one
		// of its own.
		cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
			`echo 2 > /proc/sys/vm/memfd_noexec && exec "$0" -test.run '^TestNoExecMemfd$' -test.v`, os.Args[0])
		cmd.Env = append(os.Environ(), "SHOAL_TEST_MEMFD_NOEXEC=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestNoExecMemfd") {
			t.Fatalf("in a pid namespace with vm.memfd_noexec=2: %v\n%s", err, out)
		}
		return
	}
	if _, err := unix.MemfdCreate("probe", unix.MFD_EXEC); !errors.Is(err, unix.EACCES) {
		t.Fatalf("memfd_create(MFD_EXEC) = %v, want EACCES under vm.memfd_noexec=2", err)
	}
	_, cfg := newMonitors(t)
	cfg.Program = "" // the embedded one
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	spec := testSpec(t, cfg, "exit", "3")
	h := mustStart(t, m, spec)
	if ex := h.Wait(); ex.Code != 3 {
		t.Errorf("exit %+v, want 3", ex)
	}
	deleteGone(t, cfg, h)
	if fi, err := os.Stat(filepath.Join(cfg.StateDir, programFileName)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("program copy in the state dir: %v, %v", fi, err)
	}
}

// A container that runs as another user dies with its monitor too: the
// change of user clears the parent-death signal, which the init sets again.
func TestUserContainerDiesWithMonitor(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	spec := testSpec(t, cfg, "sleep")
	spec.User = "4242"
	h := mustStart(t, m, spec)
	waitForLog(t, spec, "hello stdout")
	if err := syscall.Kill(h.MonitorPid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the container dies with its monitor", func() error {
		if alive(h.Pid()) {
			return fmt.Errorf("container pid %d still runs", h.Pid())
		}
		return nil
	})
	h.Wait()
	deleteGone(t, cfg, h)
}

// An fd the daemon inherited without close-on-exec (from a service manager,
// a shell) does not reach the container.
func TestNoInheritedFDs(t *testing.T) {
	m, cfg := newMonitors(t)
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "inherited")
	fd, err := unix.Open(marker, unix.O_CREAT|unix.O_RDWR, 0o600) // no O_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	spec := testSpec(t, cfg, "sleep")
	h := mustStart(t, m, spec)
	waitForLog(t, spec, "hello stdout")
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", h.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", h.Pid(), e.Name())); target == marker {
			t.Errorf("the container has the daemon's fd %d as its fd %s", fd, e.Name())
		}
	}
	deleteGone(t, cfg, h)
}

package monitor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// spareMonitors lists our children that are spare monitors of cfg's.
func spareMonitors(t *testing.T, cfg Config) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("shoal-monitor\x00" + monitorArg + "\x00" + spareArgv2(cfg.StateDir) + "\x00")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Equal(b, want) && alive(pid) && ppid(t, pid) == os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitSpare waits for one spare monitor of cfg's, held ready by m, and
// returns its pid. The process shows before m holds it: a start in
// between makes a monitor of its own.
func waitSpare(t *testing.T, m *Monitors, cfg Config) int {
	t.Helper()
	var spare int
	waitFor(t, "a spare monitor", func() error {
		pids := spareMonitors(t, cfg)
		if len(pids) != 1 {
			return fmt.Errorf("spare monitors %v, want one", pids)
		}
		if !m.spare.Ready() {
			return fmt.Errorf("spare monitor %d runs but is not ready yet", pids[0])
		}
		spare = pids[0]
		return nil
	})
	return spare
}

func TestSpareMonitor(t *testing.T) {
	_, cfg := newMonitors(t)
	cfg.Spare = true
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	// The first start leaves a spare behind.
	h1, err := m.Start(t.Context(), testSpec(t, cfg, "sleep"))
	if err != nil {
		t.Fatal(err)
	}
	spare := waitSpare(t, m, cfg)

	// The next container gets it as its monitor, and is monitored as any.
	spec := testSpec(t, cfg, "term")
	h2, err := m.Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if h2.MonitorPid() != spare {
		t.Fatalf("monitor of the second container is %d, want the spare %d", h2.MonitorPid(), spare)
	}
	if got := ppid(t, h2.Pid()); got != spare {
		t.Errorf("container's parent is %d, want the spare %d", got, spare)
	}
	// ps shows which container it serves.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", spare))
	args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	if err != nil || len(args) != 3 || strings.TrimRight(args[2], " ") != filepath.Join(cfg.StateDir, spec.ID) {
		t.Errorf("cmdline of the spare turned monitor: %q, %v; want its state dir as argv[2]", b, err)
	}
	waitFor(t, "output in the log", func() error {
		b, err := tailLog(spec.LogPath, -1)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), "waiting for SIGTERM\n") {
			return fmt.Errorf("log is %q", b)
		}
		return nil
	})
	if err := h2.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	if ex := h2.Wait(); ex.Err != nil || ex.Code != 7 {
		t.Errorf("exit of the stopped container: %+v, want code 7 (its SIGTERM handler)", ex)
	}
	if err := h2.Delete(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, cfg, spec.ID)

	// A spare killed while it waited is passed over, at once or once the
	// start finds its socket dead.
	next := waitSpare(t, m, cfg)
	if err := syscall.Kill(next, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// kill returns before the process is dead: a request sent in between
	// may reach its socket, and then the start cannot tell whether it was
	// read and must not retry. Once the spare is dead its socket is closed.
	waitFor(t, "the killed spare to die", func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", next))
		if err != nil {
			return nil
		}
		if _, after, ok := strings.Cut(string(b), ") "); ok && strings.HasPrefix(after, "Z") {
			return nil
		}
		return fmt.Errorf("spare %d still alive", next)
	})
	h3 := mustStart(t, m, testSpec(t, cfg, "sleep"))
	if h3.MonitorPid() == next {
		t.Errorf("the killed spare %d is the new container's monitor", next)
	}
	deleteGone(t, cfg, h3)

	// A spare told to stop (pkill shoal-monitor) goes, rather than keep
	// the signal for the next container it would monitor.
	next = waitSpare(t, m, cfg)
	if err := syscall.Kill(next, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the spare to go on SIGTERM", func() error {
		if alive(next) {
			return fmt.Errorf("spare %d still runs", next)
		}
		return nil
	})
	spec4 := testSpec(t, cfg, "sleep")
	h4 := mustStart(t, m, spec4)
	waitForLog(t, spec4, "hello stdout")
	select {
	case <-h4.Done():
		t.Errorf("the container after a SIGTERMed spare ended: %+v", h4.Wait())
	default:
	}
	deleteGone(t, cfg, h4)

	// Close removes the spare made since, and leaves containers running.
	waitSpare(t, m, cfg)
	m.Close()
	if pids := spareMonitors(t, cfg); len(pids) != 0 {
		t.Errorf("spare monitors %v after Close", pids)
	}
	if !alive(h1.Pid()) || !alive(h1.MonitorPid()) {
		t.Error("Close stopped a monitored container")
	}
	if err := h1.Delete(); err != nil {
		t.Fatal(err)
	}
}

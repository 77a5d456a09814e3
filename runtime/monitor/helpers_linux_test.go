package monitor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/runtime/linux"
	"github.com/shoal-edge/shoal/runtime/logs"
	"github.com/shoal-edge/shoal/runtime/supervise"
)

var _ supervise.Process = (*Handle)(nil)

// workload is the container program, built static into the test image.
const workload = `package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	switch os.Args[1] {
	case "exit":
		n, _ := strconv.Atoi(os.Args[2])
		os.Exit(n)
	case "sleep":
		fmt.Println("hello stdout")
		fmt.Fprintln(os.Stderr, "hello stderr")
		time.Sleep(time.Hour)
	case "ignore":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		time.Sleep(time.Hour)
	case "term":
		// As PID 1 it sees SIGTERM only with a handler: exit 7 on it.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("waiting for SIGTERM")
		<-c
		os.Exit(7)
	case "eat":
		var kept [][]byte
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			kept = append(kept, b)
		}
	case "spam":
		n, _ := strconv.Atoi(os.Args[2])
		for i := 0; i < n; i++ {
			if i%2 == 0 {
				fmt.Printf("line %04d\n", i)
			} else {
				fmt.Fprintf(os.Stderr, "line %04d\n", i)
			}
		}
	}
}
`

// imageDir is the test image rootfs, with the workload at /app.
var imageDir string

func TestMain(m *testing.M) {
	// The monitor forks this binary as the container init.
	if linux.IsInit(os.Args) {
		linux.InitMain()
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, cleanup, err := testutil.BuildWorkload(workload)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	imageDir = dir
	prog, cleanupProg, err := testutil.BuildMonitorProgram()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanupProg()
	program = prog
	return m.Run()
}

// program is the monitor program built from the current source.
var program string

// newMonitors returns a Config with state dirs and a cgroup parent of the
// test's own, and Monitors on it. At the end every monitor left is stopped
// and nothing of it may remain.
func newMonitors(t *testing.T) (*Monitors, Config) {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	cfg := Config{
		StateDir:        filepath.Join(dir, "monitors"),
		RuntimeStateDir: filepath.Join(dir, "containers"),
		CgroupParent:    testutil.CgroupParent(t),
		Logger:          testutil.Logger(t),
		Program:         program,
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A failed test may have left monitors running: stop them.
		m2, err := New(cfg)
		if err != nil {
			t.Error(err)
			return
		}
		hs, _ := m2.Adopt()
		for _, h := range hs {
			if err := h.Delete(); err != nil {
				t.Errorf("delete leftover %s: %v", h.ID(), err)
			}
		}
		rt, _ := linux.New(linux.Config{StateDir: cfg.RuntimeStateDir, CgroupParent: cfg.CgroupParent})
		if err := rt.Cleanup(nil); err != nil {
			t.Errorf("runtime Cleanup: %v", err)
		}
	})
	return m, cfg
}

func testSpec(t *testing.T, cfg Config, args ...string) Spec {
	id := fmt.Sprintf("mon-%d", rand.Uint32())
	return Spec{
		Spec:    linux.Spec{ID: id, Image: imageDir, Args: append([]string{"/app"}, args...)},
		LogPath: filepath.Join(filepath.Dir(cfg.StateDir), "logs", id+".log"),
		Labels:  map[string]string{"app": "web", "index": "0"},
	}
}

// assertGone checks that nothing of container id is left: no mount, cgroup,
// container dir or monitor dir.
func assertGone(t *testing.T, cfg Config, id string) {
	t.Helper()
	testutil.AssertContainerGone(t, cfg.RuntimeStateDir, cfg.CgroupParent, id)
	if _, err := os.Stat(filepath.Join(cfg.StateDir, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("monitor dir of %s left: %v", id, err)
	}
}

// alive says whether pid runs (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the ")" that ends the command name.
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z'
}

// ppid reads pid's parent.
func ppid(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	n, _ := strconv.Atoi(f[1])
	return n
}

// waitFor polls check until it returns nil, failing with its last error
// after 15s.
func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	if err := testutil.Poll(15*time.Second, check); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// statusField reads a hex mask field ("SigIgn:\t0000000000000001") of
// /proc/PID/status.
func statusField(t *testing.T, pid int, key string) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n
		}
	}
	t.Fatalf("/proc/%d/status: no %s", pid, key)
	return 0
}

// memKiB reads a "Key:   123 kB" figure of a /proc file.
func memKiB(t *testing.T, file, key string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatalf("%s: no %s", file, key)
	return 0
}

// mustStart starts spec.
func mustStart(t *testing.T, m *Monitors, spec Spec) *Handle {
	t.Helper()
	h, err := m.Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// waitForLog waits until spec's log holds text: the workload is ready.
func waitForLog(t *testing.T, spec Spec, text string) {
	t.Helper()
	waitFor(t, "workload ready", func() error {
		if b, _ := os.ReadFile(spec.LogPath); !strings.Contains(string(b), text) {
			return fmt.Errorf("log %q has no %q", b, text)
		}
		return nil
	})
}

// deleteGone deletes h and checks that nothing of it is left.
func deleteGone(t *testing.T, cfg Config, h *Handle) {
	t.Helper()
	if err := h.Delete(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, cfg, h.ID())
}

// startReleased starts spec and lets go of it, as a daemon that stops
// leaves its monitors running.
func startReleased(t *testing.T, m *Monitors, spec Spec) *Handle {
	t.Helper()
	h := mustStart(t, m, spec)
	h.Close()
	return h
}

// adopt has a new daemon adopt cfg's monitors; it wants n handles.
func adopt(t *testing.T, cfg Config, n int) []*Handle {
	t.Helper()
	m2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := m2.Adopt()
	if err != nil || len(hs) != n {
		t.Fatalf("Adopt = %d handles, %v; want %d", len(hs), err, n)
	}
	return hs
}

// tailLog is the last n lines of the log at path (all for n < 0).
func tailLog(path string, n int) ([]byte, error) {
	return tailLogOpts(path, n, logs.FilterOptions{})
}

// tailLogOpts reads the last n lines as `shoal logs` shows them.
func tailLogOpts(path string, n int, opts logs.FilterOptions) ([]byte, error) {
	r, err := logs.Tail(path, n)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out bytes.Buffer
	f := logs.NewFilter(&out, opts)
	if _, err := io.Copy(f, r); err != nil {
		return nil, err
	}
	return out.Bytes(), f.Flush()
}

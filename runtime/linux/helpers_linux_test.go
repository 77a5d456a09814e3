package linux

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
	"golang.org/x/sys/unix"
)

// progPath is the static test workload, built once by TestMain.
var progPath string

func TestMain(m *testing.M) {
	// Start re-executes /proc/self/exe: in tests, this binary.
	if IsInit(os.Args) {
		InitMain()
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv(cgroup2Env) == "1" {
		// TestOnCgroup2 re-ran us in a private mount namespace: show
		// the cgroup2 hierarchy where a unified host has it.
		if err := unix.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
			fmt.Fprintf(os.Stderr, "mount cgroup2 on /sys/fs/cgroup: %v\n", err)
			return 1
		}
	}
	dir, err := os.MkdirTemp("", "shoal-linux-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	progPath = filepath.Join(dir, "prog")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		gobin = p
	}
	cmd := exec.Command(gobin, "build", "-o", progPath, "./testdata/prog")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build test program: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// testImage makes an image rootfs: the program at /app and /usr/bin/prog,
// an empty /etc.
func testImage(t *testing.T) string {
	t.Helper()
	img := t.TempDir()
	for _, d := range []string{"etc", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(img, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"app", "usr/bin/prog"} {
		if err := copyFile(progPath, filepath.Join(img, p)); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func copyFile(from, to string) error {
	if err := os.Link(from, to); err == nil {
		return nil
	}
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// newRuntime returns a Runtime with a state dir and cgroup parent of its
// own, so tests (and other packages' tests) never see each other's
// containers; the parent cgroup is removed at the end.
func newRuntime(t *testing.T) (*Runtime, Config) {
	t.Helper()
	return newRuntimeWith(t, "", 0)
}

// newRuntimeWith is newRuntime with one-off containers and spares; such a
// runtime is also closed at the end, which removes its spare.
func newRuntimeWith(t *testing.T, oneOffPrefix string, spareIdle time.Duration) (*Runtime, Config) {
	t.Helper()
	testutil.RequireRoot(t)
	cfg := Config{
		StateDir:     filepath.Join(t.TempDir(), "containers"),
		CgroupParent: testutil.CgroupParent(t),
		Logger:       testutil.Logger(t),
		OneOffPrefix: oneOffPrefix,
		SpareIdle:    spareIdle,
	}
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if oneOffPrefix != "" {
			if err := rt.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		if err := rt.Cleanup(nil); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
	return rt, cfg
}

var nonID = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// testID is unique per call and says which test made it.
func testID(t *testing.T) string {
	return fmt.Sprintf("%s-%d", nonID.ReplaceAllString(t.Name(), "_"), rand.Uint32())
}

// start starts prog with args in a fresh container and deletes it at the end.
func start(t *testing.T, rt *Runtime, s Spec) (*Container, *testutil.SyncBuffer) {
	t.Helper()
	out := &testutil.SyncBuffer{}
	if s.ID == "" {
		s.ID = testID(t)
	}
	if s.Image == "" {
		s.Image = testImage(t)
	}
	s.Stdout = out
	if s.Stderr == nil {
		s.Stderr = testutil.LogWriter(t)
	}
	c, err := rt.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Delete(); err != nil {
			t.Errorf("Delete: %v", err)
		}
	})
	return c, out
}

// assertGone checks that nothing of container id is left: no mount, no
// cgroup, no state dir.
func assertGone(t *testing.T, cfg Config, id string) {
	t.Helper()
	testutil.AssertContainerGone(t, cfg.StateDir, cfg.CgroupParent, id)
}

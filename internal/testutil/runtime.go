package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// CgroupParent returns a cgroup parent name of the test's own and removes
// its directories when the test ends. Register the runtime's own cleanup
// after calling it: cleanups run last-in first-out, so the containers go
// before their parent.
func CgroupParent(t testing.TB) string {
	t.Helper()
	parent := fmt.Sprintf("shoal-test-%d", rand.Uint32())
	t.Cleanup(func() {
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
		for _, d := range append(dirs, "/sys/fs/cgroup/"+parent) {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				t.Errorf("remove test cgroup parent %s: %v", d, err)
			}
		}
	})
	return parent
}

// Logger logs at debug level into the test's log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// LogWriter writes each Write as a line of the test's log (a container's
// stderr, say).
func LogWriter(t testing.TB) io.Writer { return testWriter{t} }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// AssertContainerGone fails the test if anything of container id is left
// on the host: mounts under its state dir, the dir itself, or its cgroup in
// any hierarchy.
func AssertContainerGone(t testing.TB, stateDir, cgroupParent, id string) {
	t.Helper()
	dir := filepath.Join(stateDir, id)
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(info, []byte(dir)) {
		t.Errorf("mounts of %s left in /proc/self/mountinfo", dir)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir %s left: %v", dir, err)
	}
	left, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgroupParent + "/" + id)
	if _, err := os.Stat("/sys/fs/cgroup/" + cgroupParent + "/" + id); err == nil {
		left = append(left, "/sys/fs/cgroup/"+cgroupParent+"/"+id)
	}
	if len(left) > 0 {
		t.Errorf("cgroup dirs left: %v", left)
	}
}

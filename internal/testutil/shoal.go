package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	shoalOnce sync.Once
	shoalPath string
	shoalErr  error
)

// ShoalBinary builds the shoal binary as `make build` does (static,
// stripped, same build tags) once per test process and returns its path;
// RemoveShoalBinary deletes it from TestMain.
func ShoalBinary(tb testing.TB) string {
	tb.Helper()
	shoalOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shoal-test-bin")
		if err != nil {
			shoalErr = err
			return
		}
		shoalPath = filepath.Join(dir, "shoal")
		if shoalErr = checkMonitorProgram(); shoalErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-tags", "urfave_cli_no_docs", "-ldflags", "-s -w", "-o", shoalPath, ".")
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			shoalErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if shoalErr != nil {
		tb.Fatal(shoalErr)
	}
	return shoalPath
}

// repoRoot is the module's root directory.
func repoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..")
}

// checkMonitorProgram makes sure the monitor program the binary will embed
// is the one the source builds: go build embeds whatever `go generate`
// left, and a stale one fails in ways that point elsewhere. Builds are
// reproducible (-trimpath, the same flags), so the bytes must be equal.
func checkMonitorProgram() error {
	embedded := filepath.Join(repoRoot(), "runtime", "monitor", "progbin", runtime.GOARCH, "shoal-monitor")
	have, err := os.ReadFile(embedded)
	if err != nil {
		return fmt.Errorf("no monitor program to embed (%v): run `go generate ./runtime/monitor` (make test does)", err)
	}
	fresh, cleanup, err := BuildMonitorProgram()
	if err != nil {
		return err
	}
	defer cleanup()
	want, err := os.ReadFile(fresh)
	if err != nil {
		return err
	}
	if !bytes.Equal(have, want) {
		return fmt.Errorf("%s is stale, older than the source of runtime/monitor/prog: run `go generate ./runtime/monitor` (make test does)", embedded)
	}
	return nil
}

// RemoveShoalBinary deletes what ShoalBinary built.
func RemoveShoalBinary() {
	if shoalPath != "" {
		os.RemoveAll(filepath.Dir(shoalPath))
	}
}

// BuildMonitorProgram builds the container monitor program as `go
// generate ./runtime/monitor` does, from the current source, into a
// temporary directory that cleanup removes: for the monitor package's tests,
// which run it through monitor.Config.Program.
func BuildMonitorProgram() (path string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "shoal-monitor-prog")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "shoal-monitor")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", path, "./runtime/monitor/prog")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go build monitor program: %v\n%s", err, out)
	}
	return path, cleanup, nil
}

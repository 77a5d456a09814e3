package testutil

import (
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
		_, self, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-trimpath", "-tags", "urfave_cli_no_docs", "-ldflags", "-s -w", "-o", shoalPath, ".")
		cmd.Dir = filepath.Join(filepath.Dir(self), "..", "..")
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
	_, self, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", path, "./runtime/monitor/prog")
	cmd.Dir = filepath.Join(filepath.Dir(self), "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go build monitor program: %v\n%s", err, out)
	}
	return path, cleanup, nil
}

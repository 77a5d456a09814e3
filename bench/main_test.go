package bench

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
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binEnv names a shoal binary to benchmark instead of building one (make
// bench passes bin/shoal, the binary make build made).
const binEnv = "SHOAL_BENCH_BIN"

// shoalBin returns the binary named by SHOAL_BENCH_BIN, or builds one once
// per run of the test binary, as make build does (static, trimmed,
// stripped), so that the figures are the shipped binary's.
func shoalBin(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv(binEnv); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := os.Stat(abs); err != nil {
			tb.Fatalf("%s: %v", binEnv, err)
		}
		return abs
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shoal-bench-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "shoal")
		_, self, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binPath, ".")
		cmd.Dir = filepath.Join(filepath.Dir(self), "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	// The test binary doubles as the crun helper (see crunHelper): it is
	// started again with this variable set, in its own mount namespace.
	if os.Getenv(helperEnv) != "" {
		os.Exit(crunHelperMain())
	}
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

package bench

import (
	"github.com/shoal-edge/shoal/internal/testutil"
	"os"
	"path/filepath"
	"testing"
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
	return testutil.ShoalBinary(tb)
}

// baseEnv names a second binary, typically the build before a change.
// BenchmarkOneShotStart and BenchmarkCrashToRunning then run it as well,
// interleaved with the first in the same run so that drift of the machine
// hits both alike, and report its figures as "base".
const baseEnv = "SHOAL_BENCH_BASE_BIN"

// baseBin returns the binary named by SHOAL_BENCH_BASE_BIN, or "" when the
// variable is not set.
func baseBin(tb testing.TB) string {
	tb.Helper()
	p := os.Getenv(baseEnv)
	if p == "" {
		return ""
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		tb.Fatalf("%s: %v", baseEnv, err)
	}
	return abs
}

func TestMain(m *testing.M) {
	// The test binary doubles as the crun helper (see crunHelper): it is
	// started again with this variable set, in its own mount namespace.
	if os.Getenv(helperEnv) != "" {
		os.Exit(crunHelperMain())
	}
	code := m.Run()
	testutil.RemoveShoalBinary()
	os.Exit(code)
}

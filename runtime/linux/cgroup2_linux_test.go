package linux

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/cgroups/v3"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// cgroup2Env tells the test binary to run on the cgroup2 view.
const cgroup2Env = "SHOAL_TEST_CGROUP2"

// TestOnCgroup2 runs the container tests again as on a unified (cgroup v2)
// host: on a hybrid host it re-executes this binary in a private mount
// namespace where /sys/fs/cgroup is the cgroup2 mount. That hierarchy has no
// controllers on a hybrid host, so the limit tests stay with the v1 run.
func TestOnCgroup2(t *testing.T) {
	testutil.RequireRoot(t)
	if os.Getenv(cgroup2Env) == "1" {
		t.Skip("already on the cgroup2 view")
	}
	if cgroups.Mode() != cgroups.Hybrid {
		t.Skip("not a hybrid host: the other tests already run on this host's only layout")
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.count=1", "-test.v",
		"-test.run", "^(TestIsolation|TestHostNetwork|TestExitCodes|TestStop|TestStartErrors|TestCleanup|TestExec|TestSecurityDefaults|TestInItsCgroup|TestOneOffSpare|TestOneOffSpareRetires)$")
	cmd.Env = append(os.Environ(), cgroup2Env+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tests on cgroup2: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "--- PASS"); n < 11 {
		t.Errorf("only %d of 11 tests passed on cgroup2:\n%s", n, out)
	}
}

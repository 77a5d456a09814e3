package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// procStatusKB reads a "VmRSS"-like field of /proc/PID/status, in KiB.
func procStatusKB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the daemon's status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("%s in /proc/%d/status: %q", field, pid, l)
			}
			return kb
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// An exec health check that prints without end cannot grow the daemon:
// the check's output keeps its first bytes, the rest is counted and
// dropped, and ps says how much.
func TestHealthCheckEndlessOutput(t *testing.T) {
	const flood = 15 * time.Second
	const maxRSS = 150 << 10 // KiB
	n := newNode(t, "e2e-health-flood")
	n.start()
	n.must("image", "import", testutil.BuildTestImage(t, "testprog:1", testprogDir()))
	n.must("apply", "-f", n.writeFile("flood.yaml", `name: flood
image: testprog:1
command: ["/app", "-sleep", "1h"]
restart: never
health: {exec: ["/app", "-yes"], interval: 100ms, timeout: 3s, retries: 1}
`))
	pid := n.cmd.Process.Pid
	var health string
	start := time.Now()
	testutil.WaitFor(t, flood+30*time.Second, func() error {
		var ps []struct {
			State  string `json:"state"`
			Health string `json:"health"`
		}
		if err := n.json(&ps, "ps", "-o", "json"); err != nil {
			return err
		}
		if rss := procStatusKB(t, pid, "VmRSS"); rss > maxRSS {
			t.Fatalf("the daemon's RSS is %d MiB after %s of an endless health check; want under %d MiB", rss>>10, time.Since(start).Round(time.Second), maxRSS>>10)
		}
		if len(ps) != 1 || ps[0].State != "unhealthy" {
			return fmt.Errorf("ps: %+v; want one unhealthy instance", ps)
		}
		health = ps[0].Health
		if time.Since(start) < flood {
			return fmt.Errorf("flooding for %s yet", flood)
		}
		return nil
	})
	if peak := procStatusKB(t, pid, "VmHWM"); peak > maxRSS {
		t.Errorf("the daemon's peak RSS was %d MiB; want under %d MiB", peak>>10, maxRSS>>10)
	} else {
		t.Logf("daemon RSS %d MiB, peak %d MiB, after %s of an endless health check", procStatusKB(t, pid, "VmRSS")>>10, peak>>10, time.Since(start).Round(time.Second))
	}
	m := regexp.MustCompile(`^health check timed out after 3s: exec /app: .*: y\ny\n(y\n)*y? \.\.\. \[([0-9]+) bytes dropped\]$`).FindStringSubmatch(health)
	if m == nil {
		t.Fatalf("ps shows health %.300q...; want the first lines of output and the bytes dropped", health)
	}
	if dropped, _ := strconv.ParseInt(m[2], 10, 64); dropped < 1<<20 {
		t.Errorf("health output says %d bytes dropped; want the megabytes the check printed", dropped)
	}
	if len(health) > 2048 {
		t.Errorf("health output is %d bytes; want it bounded", len(health))
	}
}

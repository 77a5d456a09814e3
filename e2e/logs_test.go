package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// Each instance prints its host name (logs-0, logs-1, logs-2), sleeps a
// moment and exits; restart: always brings it back to print again.
const chattyApp = `name: logs
image: testprog:1
replicas: 3
command: ["/app", "-cat", "/proc/sys/kernel/hostname", "-sleep", "1s"]
restart: always
resources: {memory: 32Mi, pids: 32}
`

// `shoal logs -f APP` follows every instance; with --tail 0 it prints only
// what they write from then on. (What logs APP prints without -f is the
// scenario testdata/scripts/logs.txtar.)
func TestLogsFollowEveryInstance(t *testing.T) {
	n := newNode(t, "e2e-logs")
	n.start()
	n.must("image", "import", testutil.TestProgImage(t, "testprog:1"))
	n.must("apply", "-f", n.writeFile("app.yaml", chattyApp))
	want := []string{"logs/0 | logs-0", "logs/1 | logs-1", "logs/2 | logs-2"}
	testutil.WaitFor(t, 30*time.Second, func() error {
		out := n.must("logs", "logs")
		for _, w := range want {
			if !strings.Contains(out, w) {
				return fmt.Errorf("logs lack %q:\n%s", w, out)
			}
		}
		return nil
	})

	// -f with --tail 0 prints only what the instances write from now on,
	// from all three.
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, n.bin, "--data-dir", n.dataDir, "logs", "-f", "--tail", "0", "logs")
	buf := testutil.SyncBuffer{Max: 64 << 10}
	cmd.Stdout = &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	testutil.WaitFor(t, 40*time.Second, func() error {
		out := buf.String()
		for _, w := range want {
			if !strings.Contains(out, w) {
				return fmt.Errorf("logs -f lacks %q:\n%s", w, out)
			}
		}
		return nil
	})
}

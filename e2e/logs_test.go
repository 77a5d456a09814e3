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

// `shoal logs APP` shows every instance, each line prefixed with its
// instance; --tail counts per instance; --timestamps and --since read the
// time each line was written; -f follows all of them.
func TestLogsOfEveryInstance(t *testing.T) {
	n := newNode(t, "e2e-logs")
	n.start()
	n.must("image", "import", testutil.BuildTestImage(t, "testprog:1", testprogDir()))
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
	// Each instance has printed twice by now: --tail 1 gives one line each.
	testutil.WaitFor(t, 30*time.Second, func() error {
		out := n.must("logs", "logs")
		for _, w := range want {
			if c := strings.Count(out, w); c < 2 {
				return fmt.Errorf("%q printed %d times, want 2:\n%s", w, c, out)
			}
		}
		return nil
	})
	out := n.must("logs", "--tail", "1", "logs")
	if got := strings.Split(strings.TrimSpace(out), "\n"); len(got) != 3 {
		t.Fatalf("--tail 1 of 3 instances printed %d lines, want 3:\n%s", len(got), out)
	}
	for _, w := range want {
		if strings.Count(out, w) != 1 {
			t.Fatalf("--tail 1 lacks %q once:\n%s", w, out)
		}
	}
	// One instance keeps its plain output.
	if out := n.must("logs", "--tail", "1", "logs/1"); out != "logs-1\n" {
		t.Fatalf("logs of one instance: %q, want %q", out, "logs-1\n")
	}

	// --timestamps: each line carries the time it was written; --since
	// that of the newest line shows only the newest lines.
	out = n.must("logs", "--timestamps", "logs")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var newest time.Time
	for _, l := range lines {
		tm := lineTime(t, l)
		if tm.After(newest) {
			newest = tm
		}
	}
	out = n.must("logs", "--timestamps", "--since", newest.Format(time.RFC3339Nano), "logs")
	recent := strings.Split(strings.TrimSpace(out), "\n")
	if len(recent) == 0 || len(recent) >= len(lines) {
		t.Fatalf("--since %s printed %d of %d lines:\n%s", newest.Format(time.RFC3339Nano), len(recent), len(lines), out)
	}
	for _, l := range recent {
		if lineTime(t, l).Before(newest) {
			t.Fatalf("--since %s printed an older line %q", newest.Format(time.RFC3339Nano), l)
		}
	}
	if out := n.must("logs", "--since", "1h", "logs"); strings.Count(out, "\n") < len(lines) {
		t.Fatalf("--since 1h printed fewer lines than all %d:\n%s", len(lines), out)
	}

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

// lineTime reads the time of a line of `logs --timestamps APP`:
// "APP/INDEX | TIME text".
func lineTime(t *testing.T, line string) time.Time {
	t.Helper()
	_, rest, ok := strings.Cut(line, " | ")
	stamp, _, ok2 := strings.Cut(rest, " ")
	tm, err := time.Parse(time.RFC3339Nano, stamp)
	if !ok || !ok2 || err != nil {
		t.Fatalf("line %q has no instance and time", line)
	}
	return tm
}

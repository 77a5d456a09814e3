package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// reschedule_after is honoured both ways: when a node is killed, the
// instance of an app with a short reschedule_after moves to a live node,
// while that of an app with a long one stays with the dead node (unknown)
// and does not move.
func TestRescheduleAfter(t *testing.T) {
	t.Parallel()
	f := voterAndNonVoterFleet(t, "a")
	f.importTestprog(t, "a", "b")
	spec := filepath.Join(t.TempDir(), "apps.yaml")
	os.WriteFile(spec, []byte(`name: quick
image: testprog:1
command: ["/app", "-sleep", "1h"]
reschedule_after: 2s
---
name: slow
image: testprog:1
command: ["/app", "-sleep", "1h"]
reschedule_after: 1h
`), 0o644)
	t.Cleanup(func() {
		if f.lab.Running("b") || f.lab.Restart("b") == nil {
			f.cli("a", "rm", "quick", "slow")
		}
		f.waitNothingLeft(t, 30*time.Second, "a", "b")
	})
	ps := func() map[string]instance { return f.psBy(t, "a", func(i instance) string { return i.App }) }
	// Both on b: a is drained while they are placed.
	f.mustCLI("a", "drain", "a")
	f.mustCLI("a", "apply", "-f", spec)
	testutil.WaitFor(t, 30*time.Second, func() error {
		got := ps()
		if got["quick"].Node != "b" || got["quick"].State != "running" || got["slow"].Node != "b" || got["slow"].State != "running" {
			return fmt.Errorf("want both running on b: %+v", got)
		}
		return nil
	})
	f.mustCLI("a", "uncordon", "a")

	if err := f.lab.Kill9("b"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var got map[string]instance
	testutil.WaitFor(t, 60*time.Second, func() error {
		got = ps()
		if got["quick"].Node != "a" || got["quick"].State != "running" {
			return fmt.Errorf("quick has not moved to a: %+v", got)
		}
		return nil
	})
	t.Logf("quick moved to a and runs there %v after b was killed", time.Since(killed).Round(100*time.Millisecond))
	if got["slow"].Node != "b" || got["slow"].State != "unknown" {
		t.Errorf("slow, with reschedule_after: 1h, moved or changed: %+v", got["slow"])
	}
}

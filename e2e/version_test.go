package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/store"
)

func versionedApp(spec string) string {
	return fmt.Sprintf(`name: ver
image: testprog:1
command: ["/app", "-stdout", "spec=%s", "-sleep", "1h"]
env: {SPEC: %s}
restart: always
reschedule_after: 1h
placement: {labels: {role: edge}}
`, spec, spec)
}

// An instance runs exactly the version of its app that its allocation
// names, not whatever the app's spec is now. The state a rollout passes
// through (the app at a new version, the instance's allocation still at
// the old one) is that of a node that received the spec change and went
// down before the scheduler's move: ver-b, which runs the instance, is
// given the leader's log up to the change by the real FSM and starts
// without a leader. `shoal ps` shows the old version, the container runs
// the old command and env, also after a crash, and runs the new ones once
// the leader is back and moves the allocation.
func TestInstanceRunsItsAllocationsVersion(t *testing.T) {
	a, b := voterAndNonVoter(t, "ver")
	// The app goes before the nodes stop, through the voter (ver-b, a
	// non-voter, takes no writes), with both nodes up: a node this test
	// stopped comes back, so that nothing stays behind when a check
	// fails.
	t.Cleanup(func() {
		if !a.running() {
			a.start()
		}
		if !b.running() {
			b.startWith(func() error { _, err := findVer(b); return err })
		}
		a.shoal("rm", "ver")
		if err := testutil.Poll(30*time.Second, func() error {
			if m := monitorsOf(b.dataDir, false); len(m) > 0 {
				return fmt.Errorf("ver-b's monitors still running after rm: %v", m)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	})
	b.must("image", "import", testutil.TestProgImage(t, "testprog:1"))
	a.must("label", "ver-b", "role=edge")
	a.must("apply", "-f", a.writeFile("one.yaml", versionedApp("one")))
	first := waitVer(t, b, "first start", func(i instance) error { return running(i) })
	assertRuns(t, first.PID, "one")

	// ver-b goes down (its container keeps running); the app changes.
	b.stop()
	out := a.must("apply", "-f", a.writeFile("two.yaml", versionedApp("two")))
	var v2 uint64
	if _, err := fmt.Sscanf(out, "app ver applied (version %d)", &v2); err != nil {
		t.Fatalf("apply said %q: %v", out, err)
	}
	// The leader's scheduler moves the allocation at once, in the next
	// entry; ver-b is given the log through the change only.
	a.stop()
	replayLog(t, a.dataDir, b.dataDir, v2)
	if al := allocOf(t, b.dataDir, "ver", 0); al.Version != first.Version {
		t.Fatalf("ver-b's state: ver/0 at version %d, want %d", al.Version, first.Version)
	}

	// ver-b alone: no leader, the instance's allocation at the old
	// version, the app at the new one.
	b.startWith(func() error { _, err := findVer(b); return err })
	adopted := waitVer(t, b, "after the restart", func(i instance) error {
		if err := running(i); err != nil {
			return err
		}
		if i.Version != first.Version {
			return fmt.Errorf("version %d, want the allocation's %d", i.Version, first.Version)
		}
		return nil
	})
	assertRuns(t, adopted.PID, "one")
	if err := syscall.Kill(adopted.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	restarted := waitVer(t, b, "the restart after a crash", func(i instance) error {
		if err := running(i); err != nil {
			return err
		}
		if i.PID == adopted.PID || i.Restarts == 0 {
			return fmt.Errorf("not restarted yet: pid %d, restarts %d", i.PID, i.Restarts)
		}
		return nil
	})
	if restarted.Version != first.Version {
		t.Fatalf("restarted at version %d, want %d", restarted.Version, first.Version)
	}
	assertRuns(t, restarted.PID, "one")
	if out := b.must("logs", "ver/0"); strings.Contains(out, "spec=two") || !strings.Contains(out, "spec=one") {
		t.Fatalf("logs of ver/0 at version %d:\n%s", first.Version, out)
	}

	// The leader returns: the allocation moves, the new version runs.
	a.start()
	replaced := waitVer(t, b, "the move to the new version", func(i instance) error {
		if err := running(i); err != nil {
			return err
		}
		if i.Version != v2 {
			return fmt.Errorf("version %d, want %d", i.Version, v2)
		}
		return nil
	})
	assertRuns(t, replaced.PID, "two")
}

// findVer returns the instance ver/0 as node n's `ps -o json` shows it.
func findVer(n *node) (instance, error) {
	var ps []instance
	if err := n.json(&ps, "ps", "-o", "json"); err != nil {
		return instance{}, err
	}
	for _, i := range ps {
		if i.Instance == "ver/0" {
			return i, nil
		}
	}
	return instance{}, fmt.Errorf("ps shows no ver/0: %+v", ps)
}

func waitVer(t *testing.T, n *node, what string, want func(instance) error) instance {
	t.Helper()
	var got instance
	testutil.WaitFor(t, 60*time.Second, func() error {
		var err error
		if got, err = findVer(n); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := want(got); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
	return got
}

// assertRuns checks the container's process: its command line and
// environment are those of spec.
func assertRuns(t *testing.T, pid int, spec string) {
	t.Helper()
	cmdline, err1 := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	environ, err2 := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err1 != nil || err2 != nil {
		t.Fatalf("process %d: %v, %v", pid, err1, err2)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	env := strings.Split(string(environ), "\x00")
	wantArg, wantEnv := "spec="+spec, "SPEC="+spec
	hasArg, hasEnv := false, false
	for _, a := range args {
		hasArg = hasArg || a == wantArg
	}
	for _, e := range env {
		hasEnv = hasEnv || e == wantEnv
	}
	if !hasArg || !hasEnv {
		t.Fatalf("process %d runs %q with %q; want %s and %s", pid, args, env, wantArg, wantEnv)
	}
}

// allocOf reads an allocation from the state of a stopped node.
func allocOf(t *testing.T, dataDir, app string, index int) api.Allocation {
	t.Helper()
	st, err := store.Open(filepath.Join(dataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	allocs, err := st.Allocations()
	if err != nil {
		t.Fatal(err)
	}
	for _, al := range allocs {
		if al.App == app && al.Index == index {
			return al
		}
	}
	t.Fatalf("no allocation %s in %s: %+v", api.InstanceName(app, index), dataDir, allocs)
	return api.Allocation{}
}

// replayLog applies the commands of the stopped node fromDir's Raft log,
// after the stopped node toDir's applied index and through index, to
// toDir's state with the real FSM: what toDir would hold had it received
// them and stopped.
func replayLog(t *testing.T, fromDir, toDir string, through uint64) {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	wal, err := raftwal.Open(filepath.Join(fromDir, "raft", "wal"), raftwal.WithSegmentSize(4<<20), raftwal.WithMetaStore(meta))
	if err != nil {
		t.Fatal(err)
	}
	defer wal.Close()
	st, err := store.Open(filepath.Join(toDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	from := st.AppliedIndex() + 1
	for i := from; i <= through; i++ {
		var l raft.Log
		if err := wal.GetLog(i, &l); err != nil {
			t.Fatalf("log entry %d: %v", i, err)
		}
		if err, ok := st.FSM().Apply(&l).(error); ok {
			t.Fatalf("apply log entry %d: %v", i, err)
		}
	}
	if st.AppliedIndex() != through {
		t.Fatalf("replayed %d..%d: applied index %d", from, through, st.AppliedIndex())
	}
}

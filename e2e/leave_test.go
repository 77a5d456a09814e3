package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// leaveApps are placed so that a node that goes finds every case: a
// replicated app with an instance on each node (it moves), a global app
// (its instance stays with its node) and an app only the going node may
// run (it cannot move).
const leaveApps = `name: web
image: testprog:1
command: ["/app", "-sleep", "1h"]
replicas: 3
---
name: agent
image: testprog:1
command: ["/app", "-sleep", "1h"]
mode: global
---
name: pinned
image: testprog:1
command: ["/app", "-sleep", "1h"]
placement: {labels: {site: b}}
`

// startLeaveApps runs leaveApps on the voter a and the non-voter b and
// returns b's instances with their container pids, once all run.
func startLeaveApps(t *testing.T, f *fleet) map[string]int {
	t.Helper()
	f.importTestprog(t, "a", "b")
	f.mustCLI("a", "label", "b", "site=b")
	spec := filepath.Join(t.TempDir(), "apps.yaml")
	os.WriteFile(spec, []byte(leaveApps), 0o644)
	f.mustCLI("a", "apply", "-f", spec)
	// Before the lab's teardown kills a: its containers go first, so that
	// their mounts do not outlive the test.
	t.Cleanup(func() {
		f.cli("a", "rm", "web", "agent", "pinned")
		f.waitNothingLeft(t, 30*time.Second, "a")
	})
	onB := map[string]int{}
	testutil.WaitFor(t, 60*time.Second, func() error {
		clear(onB)
		var ps []instance
		out, err := f.cli("b", "ps", "-o", "json")
		if err == nil {
			err = json.Unmarshal([]byte(out), &ps)
		}
		if err != nil {
			return err
		}
		running := 0
		for _, i := range ps {
			if i.State == "running" {
				running++
			}
			if i.Node == "b" && i.PID > 0 {
				onB[i.Instance] = i.PID
			}
		}
		// agent: one on each node; pinned: on b; web: spread, the
		// least loaded node first, so two on a and one on b.
		if len(ps) != 6 || running != 6 || len(onB) != 3 {
			return fmt.Errorf("want 6 instances running, 3 of them on b: %+v", ps)
		}
		return nil
	})
	return onB
}

// exitOf is how the last run of node name's `shoal up` ended, as the lab
// logged it ("exit status 0").
func exitOf(f *fleet, name string) string {
	log, _ := os.ReadFile(f.lab.LogPath(name))
	i := strings.LastIndex(string(log), " exited: ")
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(string(log[i+len(" exited: "):]), "\n")
	return line
}

// assertGone checks that nothing of the node of dataDir is left on the
// host: its containers' processes, mounts, cgroups, monitors.
func assertGone(t *testing.T, what, dataDir, cgroup string, pids map[string]int) {
	t.Helper()
	var ps []int
	for _, p := range pids {
		ps = append(ps, p)
	}
	if left := leftovers(dataDir, cgroup, ps...); len(left) > 0 {
		t.Errorf("%s: left behind: %v", what, left)
	}
}

// A node that leaves waits until its instances run elsewhere, stops every
// container it had (also those that cannot move), stops itself, and
// leaves nothing behind; `shoal leave` says where each instance went. Its
// data dir then refuses to start, saying what to do, with exit status 3.
func TestLeaveStopsContainers(t *testing.T) {
	t.Parallel()
	f := voterAndNonVoterFleet(t, "a")
	onB := startLeaveApps(t, f)
	cgroupB := f.cgroupParent("b")
	var movedInst string
	for inst := range onB {
		if strings.HasPrefix(inst, "web/") {
			movedInst = inst
		}
	}

	// A one-off container on b too: leave stops it, and counts it.
	var runOut testutil.SyncBuffer
	run := exec.Command(f.bin, "--data-dir", f.dirs["b"], "run", "testprog:1", "--", "/app", "-stdout", "one-off up", "-sleep", "1h")
	run.Stdout = &runOut
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Process.Kill(); run.Wait() })
	testutil.WaitFor(t, 30*time.Second, func() error {
		if !strings.Contains(runOut.String(), "one-off up") {
			return fmt.Errorf("shoal run printed %q", runOut.String())
		}
		return nil
	})

	// Within the CLI helper's 30 s; the move takes a second or two.
	began := time.Now()
	out := f.mustCLI("b", "leave", "--wait", "20s")
	t.Logf("shoal leave took %v and said:\n%s", time.Since(began).Round(time.Millisecond), out)
	for _, want := range []string{
		movedInst + ": running on a",
		"agent/", "global app stays with its node: stopped",
		"pinned/0: no other node may run it",
		"left the cluster; 4 containers stopped",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("shoal leave said %q, want %q in it", out, want)
		}
	}
	// When leave answers, the moved instance runs on a, and b's
	// containers are gone.
	ps, err := f.psKeyed("a", func(i instance) string { return i.Instance })
	if err != nil {
		t.Fatal(err)
	}
	if got := ps[movedInst]; got.Node != "a" || got.State != "running" {
		t.Errorf("%s when leave answered: %+v, want running on a", movedInst, got)
	}
	for inst, pid := range onB {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("%s's container (pid %d) still runs on b after leave answered", inst, pid)
		}
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		if f.lab.Running("b") {
			return fmt.Errorf("b's shoal up still runs")
		}
		return nil
	})
	if got := exitOf(f, "b"); got != "exit status 0" {
		t.Errorf("shoal up of the node that left: %q, want exit status 0", got)
	}
	assertGone(t, "after b left", f.dirs["b"], cgroupB, onB)
	ns, err := f.nodes("a")
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 || ns[0].Name != "a" {
		t.Errorf("nodes after b left: %+v", ns)
	}

	// The data dir of a node that left: refused, with what to do.
	again, err := f.lab.Exec("b", f.upArgs("b", "b", "")...)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") ||
		!strings.Contains(string(again), "node b left its cluster (shoal leave)") ||
		!strings.Contains(string(again), "rm -rf "+f.dirs["b"]) || !strings.Contains(string(again), "SHOAL_JOIN=TOKEN") {
		t.Errorf("shoal up on the data dir of a node that left: %v\n%s", err, again)
	}
}

// A node forgotten while it was down finds out when it comes back: it
// stops the containers it adopted, leaves nothing behind, says what
// happened and what to do, and exits with status 3; its data dir then
// refuses to start.
func TestForgottenNodeStopsContainers(t *testing.T) {
	t.Parallel()
	f := voterAndNonVoterFleet(t, "a")
	onB := startLeaveApps(t, f)
	cgroupB := f.cgroupParent("b")

	// Containers outlive `shoal up`: b's keep running while it is down.
	if err := f.lab.Stop("b", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	for inst, pid := range onB {
		if syscall.Kill(pid, 0) != nil {
			t.Fatalf("%s's container (pid %d) ended with b's shoal up", inst, pid)
		}
	}
	f.mustCLI("a", "forget", "b")
	testutil.WaitFor(t, 30*time.Second, func() error {
		ps, err := f.psKeyed("a", func(i instance) string { return i.Instance })
		if err != nil {
			return err
		}
		for _, i := range ps {
			if i.Node == "b" {
				return fmt.Errorf("%s still placed on b after b was forgotten", i.Instance)
			}
		}
		if ps["agent/0"].State != "running" || len(ps) < 3 {
			return fmt.Errorf("instances on a after b was forgotten: %+v", ps)
		}
		return nil
	})

	restarted := time.Now()
	if err := f.lab.Restart("b"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, func() error {
		if f.lab.Running("b") {
			return fmt.Errorf("the forgotten node still runs")
		}
		return nil
	})
	t.Logf("the forgotten node stopped its containers and exited %v after it was started again", time.Since(restarted).Round(100*time.Millisecond))
	if got := exitOf(f, "b"); got != "exit status 3" {
		t.Errorf("shoal up of the forgotten node: %q, want exit status 3", got)
	}
	log, _ := os.ReadFile(f.lab.LogPath("b"))
	for _, want := range []string{"node b was removed from its cluster while it could not be reached (shoal forget, or a shoal leave cut short)", "its 3 containers are stopped", "rm -rf " + f.dirs["b"]} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the forgotten node's output lacks %q", want)
		}
	}
	assertGone(t, "after the forgotten node stopped", f.dirs["b"], cgroupB, onB)

	again, err := f.lab.Exec("b", f.upArgs("b", "b", "")...)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(string(again), "node b was removed from its cluster") {
		t.Errorf("shoal up on the data dir of a forgotten node: %v\n%s", err, again)
	}
}

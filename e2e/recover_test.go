package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// An image the project did not make (busybox-static packed by umoci,
// exported by skopeo as a docker-archive) imports and runs, as a one-off
// and as an app.
func TestForeignImageRuns(t *testing.T) {
	archive := testutil.BuildBusyboxImage(t)
	n := newNode(t, "e2e-busybox")
	n.start()
	n.must("image", "import", archive)
	out, errOut, code := n.shoal("run", "--rm", "busybox:1", "--", "/bin/busybox", "sh", "-c", "echo hi from $(hostname); exit 4")
	if code != 4 || !strings.Contains(out, "hi from") {
		t.Fatalf("busybox run: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// The image's own entrypoint and cmd, with a command from the spec.
	n.must("apply", "-f", n.writeFile("bb.yaml", "name: bb\nimage: busybox:1\ncommand: [/bin/busybox, sleep, \"3600\"]\n"))
	waitInstance(t, n, running)
	n.must("rm", "bb")
}

// kill -9 of `shoal up` leaves its containers running under their
// monitors; the next start adopts them.
func TestDaemonKillNine(t *testing.T) {
	n, before := sleeperNode(t, "e2e-kill")
	// A one-off leaves a spare init, the app's start a spare monitor.
	n.must("run", "--rm", "testprog:1", "--", "/app")
	testutil.WaitFor(t, 10*time.Second, func() error {
		if s := sparesOf(t, n.dataDir); len(s) != 2 {
			return fmt.Errorf("spares %v, want a monitor and an init", s)
		}
		return nil
	})

	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
	if syscall.Kill(before.PID, 0) != nil {
		t.Fatalf("container %d died with its daemon", before.PID)
	}
	// The spares go with it: the init by its parent-death signal, the
	// monitor when its socket to the daemon closes.
	testutil.WaitFor(t, 10*time.Second, func() error {
		if s := sparesOf(t, n.dataDir); len(s) != 0 {
			return fmt.Errorf("spares outlived the daemon: %v", s)
		}
		return nil
	})
	n.start()
	after := waitInstance(t, n, running)
	if after.PID != before.PID {
		t.Fatalf("pid %d after restart, want the adopted %d", after.PID, before.PID)
	}
	ents, err := readDirNames(n.dataDir + "/containers")
	if err != nil || len(ents) != 1 {
		t.Fatalf("container dirs %v (%v), want only the running one", ents, err)
	}
	// The dead spare init's cgroup is gone too.
	groups, _ := filepath.Glob("/sys/fs/cgroup/*/" + n.cgroupParent() + "/run.*")
	if len(groups) > 0 {
		t.Fatalf("cgroups of the spare init left: %v", groups)
	}
}

// sparesOf lists the spare monitor and spare init processes of a node's
// data dir: the init is known by its cgroup, under the node's.
func sparesOf(t *testing.T, dataDir string) []string {
	var out []string
	for _, m := range monitorsOf(dataDir, true) {
		if strings.Contains(m, "__shoal_monitor - ") {
			out = append(out, m)
		}
	}
	parent := "/" + cgroupParentOf(t, dataDir) + "/run."
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(parent)) {
			continue
		}
		cmd, _ := os.ReadFile(strings.TrimSuffix(p, "cgroup") + "cmdline")
		if bytes.Contains(cmd, []byte("__shoal_init")) {
			out = append(out, p+": spare init")
		}
	}
	return out
}

// --spare-monitor=false keeps no monitor ahead of time: containers still
// start and restart.
func TestNoSpareMonitor(t *testing.T) {
	n, first := sleeperNode(t, "e2e-nospare", "--spare-monitor=false")
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		i := waitInstance(t, n, running)
		if i.PID == first.PID {
			return fmt.Errorf("not restarted yet")
		}
		return nil
	})
	for _, s := range sparesOf(t, n.dataDir) {
		if strings.Contains(s, "__shoal_monitor") {
			t.Fatalf("a spare monitor with --spare-monitor=false: %s", s)
		}
	}
}

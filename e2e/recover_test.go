package e2e

import (
	"fmt"
	"os"
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
	n := newNode(t, "e2e-kill")
	n.start()
	n.must("image", "import", testutil.BuildTestImage(t, "testprog:1", testprogDir()))
	n.must("apply", "-f", n.writeFile("app.yaml", sleeperApp))
	before := waitInstance(t, n, running)

	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
	if syscall.Kill(before.PID, 0) != nil {
		t.Fatalf("container %d died with its daemon", before.PID)
	}
	n.start()
	after := waitInstance(t, n, running)
	if after.PID != before.PID {
		t.Fatalf("pid %d after restart, want the adopted %d", after.PID, before.PID)
	}
	ents, err := readDirNames(n.dataDir + "/containers")
	if err != nil || len(ents) != 1 {
		t.Fatalf("container dirs %v (%v), want only the running one", ents, err)
	}
}

// exec runs in the instance's namespaces; volumes, user and a read-only
// root filesystem reach the container.
func TestExecVolumesUser(t *testing.T) {
	archive := testutil.BuildBusyboxImage(t)
	n := newNode(t, "e2e-exec")
	n.start()
	n.must("image", "import", archive)
	n.must("apply", "-f", n.writeFile("bb.yaml", `name: bb
image: busybox:1
command: [/bin/busybox, sh, -c, "echo kept > /data/file; exec /bin/busybox sleep 3600"]
volumes: ["store:/data"]
`+"---\n"+`name: locked
image: busybox:1
command: [/bin/busybox, sleep, "3600"]
user: "1000:1000"
read_only: true
rlimits: {nofile: "100:200"}
`))
	testutil.WaitFor(t, 20*time.Second, func() error {
		ps := n.ps()
		if len(ps) != 2 {
			return fmt.Errorf("%d instances", len(ps))
		}
		for _, i := range ps {
			if err := running(i); err != nil {
				return err
			}
		}
		return nil
	})
	out, errOut, code := n.shoal("exec", "bb/0", "--", "/bin/busybox", "sh", "-c", "cat /data/file; cat /proc/1/cmdline; exit 3")
	if code != 3 || !strings.Contains(out, "kept") || !strings.Contains(out, "sleep") {
		t.Fatalf("exec: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if b, err := os.ReadFile(n.dataDir + "/volumes/store/file"); err != nil || strings.TrimSpace(string(b)) != "kept" {
		t.Fatalf("named volume on the host: %q, %v", b, err)
	}
	out, _, code = n.shoal("exec", "-i", "locked/0", "--", "/bin/busybox", "sh", "-c", "id -u; id -g; touch /x 2>&1; cat")
	_ = code
	if !strings.Contains(out, "1000\n1000\n") || !strings.Contains(out, "Read-only file system") {
		t.Fatalf("user and read-only root: %q", out)
	}
	if out := n.must("exec", "locked/0", "--", "/bin/busybox", "sh", "-c", "ulimit -n; ulimit -H -n"); out != "100\n200\n" {
		t.Fatalf("rlimits in the container: %q, want 100 and 200", out)
	}
}

// A memory limit is enforced: a container that allocates past it is
// OOM-killed, and ps says so with exit code 137. Logs follow and tail.
func TestOOMAndLogs(t *testing.T) {
	archive := testutil.BuildBusyboxImage(t)
	n := newNode(t, "e2e-oom")
	n.start()
	n.must("image", "import", archive)
	n.must("apply", "-f", n.writeFile("oom.yaml", `name: hog
image: busybox:1
command: [/bin/busybox, sh, -c, "echo one; echo two; echo three; exec /bin/busybox dd if=/dev/zero of=/dev/null bs=64M count=1"]
resources: {memory: 16Mi}
restart: never
`))
	var got instance
	testutil.WaitFor(t, 20*time.Second, func() error {
		var ps []struct {
			instance
			OOM bool `json:"oom_killed"`
		}
		if err := n.json(&ps, "ps", "-o", "json"); err != nil {
			return err
		}
		if len(ps) != 1 || ps[0].State != "exited" || !ps[0].OOM {
			return fmt.Errorf("ps %+v, want hog exited and OOM-killed", ps)
		}
		got = ps[0].instance
		return nil
	})
	if got.ExitCode != 137 {
		t.Fatalf("exit code %d, want 137", got.ExitCode)
	}
	if out := n.must("ps"); !strings.Contains(out, "oom") {
		t.Fatalf("ps table does not say oom:\n%s", out)
	}
	if out := n.must("logs", "--tail", "2", "hog/0"); out != "two\nthree\n" {
		t.Fatalf("logs --tail 2: %q", out)
	}
	if out := n.must("logs", "hog"); !strings.HasPrefix(out, "one\ntwo\nthree\n") {
		t.Fatalf("logs: %q", out)
	}
}

// restart: never means never, also across a restart of the node.
func TestNeverRunsOnce(t *testing.T) {
	n := newNode(t, "e2e-never")
	n.start()
	n.must("image", "import", testutil.BuildTestImage(t, "testprog:1", testprogDir()))
	n.must("apply", "-f", n.writeFile("job.yaml", "name: job\nimage: testprog:1\ncommand: [/app, -stdout, ran, -exit, \"3\"]\nrestart: never\n"))
	exited := func(i instance) error {
		if i.State != "exited" || i.ExitCode != 3 {
			return fmt.Errorf("job is %s (%d), want exited (3)", i.State, i.ExitCode)
		}
		return nil
	}
	waitInstance(t, n, exited)
	n.stop()
	n.start()
	waitInstance(t, n, exited)
	if out := n.must("logs", "job"); strings.Count(out, "ran") != 1 {
		t.Fatalf("the job ran %d times: %q", strings.Count(out, "ran"), out)
	}
}

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

const sleeperApp = `name: sleeper
image: testprog:1
command: ["/app", "-sleep", "1h"]
restart: always
resources: {memory: 32Mi, pids: 32}
`

func waitInstance(t *testing.T, n *node, want func(instance) error) instance {
	t.Helper()
	var got instance
	testutil.WaitFor(t, 20*time.Second, func() error {
		ps := n.ps()
		if len(ps) != 1 {
			return fmt.Errorf("ps shows %d instances, want 1: %+v", len(ps), ps)
		}
		got = ps[0]
		return want(got)
	})
	return got
}

func running(i instance) error {
	if i.State != "running" || i.PID <= 0 {
		return fmt.Errorf("instance %s is %s (pid %d), want running", i.Instance, i.State, i.PID)
	}
	return nil
}

// The walking skeleton end to end: import an image, apply an app, see it
// run, kill its process and see it come back, remove it and find nothing
// left behind.
func TestAppLifecycle(t *testing.T) {
	n := newNode(t, "e2e-life")
	n.start()
	img := testutil.TestProgImage(t, "testprog:1")
	if out := n.must("image", "import", img); !strings.Contains(out, "testprog:1") {
		t.Fatalf("import output does not name the image: %q", out)
	}
	if out := n.must("image", "ls"); !strings.Contains(out, "testprog:1") {
		t.Fatalf("image ls does not list the image:\n%s", out)
	}
	n.must("apply", "-f", n.writeFile("app.yaml", sleeperApp))

	first := waitInstance(t, n, running)
	if first.Instance != "sleeper/0" || first.Node != "e2e-life" || first.Restarts != 0 {
		t.Fatalf("unexpected instance: %+v", first)
	}
	// Usage comes from the instance's cgroup.
	var usage []struct {
		Memory uint64 `json:"memory_bytes"`
	}
	if err := n.json(&usage, "ps", "-o", "json"); err != nil || len(usage) != 1 || usage[0].Memory == 0 {
		t.Fatalf("ps -o json memory_bytes: %+v, %v", usage, err)
	}
	// The app's process is PID 1 of its own pid namespace.
	if ns, self := nsOf(t, first.PID, "pid"), nsOf(t, os.Getpid(), "pid"); ns == self {
		t.Fatalf("container shares the host pid namespace")
	}
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := waitInstance(t, n, func(i instance) error {
		if err := running(i); err != nil {
			return err
		}
		if i.PID == first.PID || i.Restarts != 1 {
			return fmt.Errorf("not restarted yet: pid %d restarts %d", i.PID, i.Restarts)
		}
		return nil
	})

	out := n.must("rm", "sleeper")
	if !strings.Contains(out, "sleeper") {
		t.Fatalf("rm output: %q", out)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		if ps := n.ps(); len(ps) != 0 {
			return fmt.Errorf("ps still shows %+v", ps)
		}
		if left := leftoversWhileRunning(n.dataDir, n.cgroupParent(), first.PID, second.PID); len(left) > 0 {
			return fmt.Errorf("left behind: %v", left)
		}
		if entries, _ := os.ReadDir(filepath.Join(n.dataDir, "containers")); len(entries) != 0 {
			return fmt.Errorf("container state left: %v", entries)
		}
		if _, err := os.Stat(filepath.Join(n.dataDir, "logs", "sleeper")); !os.IsNotExist(err) {
			return fmt.Errorf("logs of a removed app left behind (err %v)", err)
		}
		return nil
	})
}

// Containers outlive `shoal up`: a restart on the same data dir adopts
// the running container without restarting it, and learns what happened to
// one that exited while the node was down.
func TestRestartKeepsApps(t *testing.T) {
	n, before := sleeperNode(t, "e2e-restart")
	assertEmbeddedMonitor(t, before.PID)
	st1 := n.must("status", "-o", "json")

	n.stop()
	if syscall.Kill(before.PID, 0) != nil {
		t.Fatalf("container %d stopped with the node", before.PID)
	}
	if _, err := os.Stat(filepath.Join(n.dataDir, "shoal.sock")); !os.IsNotExist(err) {
		t.Fatalf("socket left behind after exit")
	}

	n.start()
	after := waitInstance(t, n, running)
	if after.PID != before.PID || after.Restarts != 0 {
		t.Fatalf("after restart: pid %d restarts %d, want the adopted pid %d and no restart", after.PID, after.Restarts, before.PID)
	}
	st2 := n.must("status", "-o", "json")
	if id1, id2 := field(t, st1, "cluster_id"), field(t, st2, "cluster_id"); id1 != id2 {
		t.Fatalf("cluster id changed across restart: %s -> %s", id1, id2)
	}

	// The container dies while the node is down: the next node learns the
	// exit and restarts it per its policy.
	n.stop()
	syscall.Kill(after.PID, syscall.SIGKILL)
	testutil.WaitFor(t, 10*time.Second, func() error {
		if syscall.Kill(after.PID, 0) == nil {
			return fmt.Errorf("pid %d still alive", after.PID)
		}
		return nil
	})
	n.start()
	waitInstance(t, n, func(i instance) error {
		if err := running(i); err != nil {
			return err
		}
		if i.PID == after.PID || i.Restarts != 1 {
			return fmt.Errorf("pid %d restarts %d, want a new container and one restart", i.PID, i.Restarts)
		}
		return nil
	})
}

func TestRunOneOff(t *testing.T) {
	n := newNode(t, "e2e-run")
	n.start()
	n.must("image", "import", testutil.TestProgImage(t, "testprog:1"))

	out, errOut, code := n.shoal("run", "--rm", "-e", "WHO=edge", "testprog:1", "--", "/app", "-env", "-stdout", "to-out", "-stderr", "to-err", "-exit", "3")
	if code != 3 {
		t.Fatalf("exit code %d, want 3 (stderr %q)", code, errOut)
	}
	if !strings.Contains(out, "env: WHO=edge") || !strings.Contains(out, "to-out") || strings.Contains(out, "to-err") {
		t.Fatalf("stdout %q does not carry the container's stdout and environment", out)
	}
	if !strings.Contains(errOut, "to-err") {
		t.Fatalf("stderr %q does not carry the container's stderr", errOut)
	}
	if _, errOut, code := n.shoal("run", "--rm", "127.0.0.1:1/nosuch:1"); code == 0 || !strings.Contains(errOut, "nosuch") {
		t.Fatalf("unknown image: exit %d, stderr %q", code, errOut)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if entries, _ := os.ReadDir(filepath.Join(n.dataDir, "containers")); len(entries) != 0 {
			return fmt.Errorf("one-off container left state: %v", entries)
		}
		return nil
	})
}

func TestBadSpecIsRejected(t *testing.T) {
	n := newNode(t, "e2e-bad")
	n.start()
	path := n.writeFile("bad.yaml", "name: ok\nimage: x:1\n---\nname: web\nimage: x:1\nreplicas: many\n")
	_, errOut, code := n.shoal("apply", "-f", path)
	if code == 0 {
		t.Fatal("bad spec accepted")
	}
	if want := path + ":6: replicas:"; !strings.Contains(errOut, want) {
		t.Fatalf("error %q does not point at %s", errOut, want)
	}
	if ps := n.ps(); len(ps) != 0 {
		t.Fatalf("part of a rejected file was applied: %+v", ps)
	}
	if _, errOut, code := n.shoal("rm", "nosuch"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("rm of an unknown app: exit %d, %q", code, errOut)
	}
}

func nsOf(t *testing.T, pid int, ns string) string {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func field(t *testing.T, js, key string) string {
	t.Helper()
	i := strings.Index(js, `"`+key+`": "`)
	if i < 0 {
		t.Fatalf("%s not in %s", key, js)
	}
	rest := js[i+len(key)+5:]
	return rest[:strings.IndexByte(rest, '"')]
}

// sleeperNode starts node name (with more `shoal up` flags) and the sleeper
// app on it, and returns the node and the running instance.
func sleeperNode(t *testing.T, name string, upArgs ...string) (*node, instance) {
	t.Helper()
	n := newNode(t, name)
	n.args = append(n.args, upArgs...)
	n.start()
	n.must("image", "import", testutil.TestProgImage(t, "testprog:1"))
	n.must("apply", "-f", n.writeFile("app.yaml", sleeperApp))
	return n, waitInstance(t, n, running)
}

// scale changes the replica count without touching the running instances.
func TestScaleKeepsInstances(t *testing.T) {
	n, first := sleeperNode(t, "e2e-scale")
	count := func(want int) map[string]instance {
		var byName map[string]instance
		testutil.WaitFor(t, 20*time.Second, func() error {
			byName = map[string]instance{}
			for _, i := range n.ps() {
				if i.State != "running" {
					return fmt.Errorf("%s is %s", i.Instance, i.State)
				}
				byName[i.Instance] = i
			}
			if len(byName) != want {
				return fmt.Errorf("%d instances, want %d", len(byName), want)
			}
			return nil
		})
		return byName
	}
	if out := n.must("scale", "sleeper=3"); !strings.Contains(out, "app sleeper scaled") {
		t.Fatalf("scale said: %q", out)
	}
	got := count(3)
	if got["sleeper/0"].PID != first.PID || got["sleeper/0"].Restarts != 0 {
		t.Fatalf("scaling up restarted sleeper/0: %+v, was pid %d", got["sleeper/0"], first.PID)
	}
	n.must("scale", "sleeper=1")
	if got := count(1); got["sleeper/0"].PID != first.PID {
		t.Fatalf("scaling down restarted sleeper/0: %+v", got["sleeper/0"])
	}
	if _, errOut, code := n.shoal("scale", "nosuch=2"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("scale of an unknown app: %d %s", code, errOut)
	}
	if _, errOut, code := n.shoal("scale", "sleeper"); code == 0 || !strings.Contains(errOut, "APP=N") {
		t.Fatalf("scale without a count: %d %s", code, errOut)
	}
}

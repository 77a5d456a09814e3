package e2e

import (
	"fmt"
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

// kill -9 of `shoal up` takes its containers with it; the next start
// cleans up what the dead daemon left and runs the app again.
func TestDaemonKillNine(t *testing.T) {
	n := newNode(t, "e2e-kill")
	n.start()
	n.must("image", "import", testutil.BuildTestImage(t, "testprog:1", testprogDir()))
	n.must("apply", "-f", n.writeFile("app.yaml", sleeperApp))
	before := waitInstance(t, n, running)

	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
	testutil.WaitFor(t, 10*time.Second, func() error {
		if syscall.Kill(before.PID, 0) == nil {
			return fmt.Errorf("container %d outlived its daemon", before.PID)
		}
		return nil
	})

	n.start()
	after := waitInstance(t, n, running)
	if after.PID == before.PID {
		t.Fatalf("same pid %d after restart", after.PID)
	}
	// Only the new container's state is left.
	testutil.WaitFor(t, 10*time.Second, func() error {
		ents, err := readDirNames(n.dataDir + "/containers")
		if err != nil {
			return err
		}
		if len(ents) != 1 {
			return fmt.Errorf("container dirs %v, want only the running one", ents)
		}
		return nil
	})
}

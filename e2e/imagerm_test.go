package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// A pulled and an imported copy of one image share its ID. Removing the
// name an app runs by deletes no data, yet the app's next start would find
// no image: the removal is refused, names the app, removes nothing of the
// same command, and the instance still restarts.
func TestImageRmKeepsTheNameAnAppUses(t *testing.T) {
	host := pushTestImage(t, "edge/testprog:2")
	n := newNode(t, "e2e-imgrm")
	n.start()
	pulled := host + "/edge/testprog:2"
	n.must("image", "pull", pulled)
	n.must("image", "import", testutil.BuildTestImage(t, "testprog:1", testprogDir()))
	n.must("apply", "-f", n.writeFile("app.yaml", sleeperApp))
	first := waitInstance(t, n, running)

	for _, refs := range [][]string{{"testprog:1"}, {pulled, "testprog:1"}} {
		_, errOut, code := n.shoal(append([]string{"image", "rm"}, refs...)...)
		if code == 0 || !strings.Contains(errOut, "sleeper") || !strings.Contains(errOut, "testprog:1") {
			t.Fatalf("image rm %v, testprog:1 used by app sleeper: exit %d, stderr %q; want a refusal naming the app", refs, code, errOut)
		}
		if out := n.must("image", "ls"); !strings.Contains(out, "testprog:1") || !strings.Contains(out, "edge/testprog:2") {
			t.Fatalf("a refused image rm %v removed something:\n%s", refs, out)
		}
	}

	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitInstance(t, n, func(i instance) error {
		if err := running(i); err != nil {
			return err
		}
		if i.PID == first.PID {
			return fmt.Errorf("instance still has the killed pid %d", i.PID)
		}
		return nil
	})

	// The name no app uses goes.
	n.must("image", "rm", pulled)
	if out := n.must("image", "ls"); strings.Contains(out, "edge/testprog") {
		t.Fatalf("removed image still listed:\n%s", out)
	}
}

// Every missing image of one command is named, not only the first.
func TestImageRmNamesEveryMissingImage(t *testing.T) {
	n := newNode(t, "e2e-imgrm-missing")
	n.start()
	n.must("image", "import", testutil.BuildTestImage(t, "testprog:1", testprogDir()))
	_, errOut, code := n.shoal("image", "rm", "nope:1", "testprog:1", "nope:2")
	if code == 0 || !strings.Contains(errOut, "nope:1") || !strings.Contains(errOut, "nope:2") {
		t.Fatalf("image rm of two missing images: exit %d, stderr %q; want both named", code, errOut)
	}
	if out := n.must("image", "ls"); !strings.Contains(out, "testprog:1") {
		t.Fatalf("a refused image rm removed testprog:1:\n%s", out)
	}
}

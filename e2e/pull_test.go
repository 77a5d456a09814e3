package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// pushTestImage serves a registry on loopback and pushes the test program's
// image to it; it returns the registry's host:port.
func pushTestImage(t *testing.T, repoTag string) string {
	t.Helper()
	return pushArchive(t, testutil.TestProgImage(t, "testprog:1"), repoTag)
}

// An app whose image the node does not have is pulled by the agent before
// it starts; images in use cannot be removed.
func TestPullOnApplyAndImageRm(t *testing.T) {
	host := pushTestImage(t, "edge/testprog:2")
	n := newNode(t, "e2e-pull")
	n.start()
	ref := host + "/edge/testprog:2"
	n.must("apply", "-f", n.writeFile("app.yaml", fmt.Sprintf("name: pulled\nimage: %s\ncommand: [/app, -sleep, 1h]\n", ref)))
	waitInstance(t, n, running)
	if out := n.must("image", "ls"); !strings.Contains(out, "edge/testprog:2") {
		t.Fatalf("pulled image not listed:\n%s", out)
	}
	if _, errOut, code := n.shoal("image", "rm", ref); code == 0 || !strings.Contains(errOut, "in use") && !strings.Contains(errOut, "used by") {
		t.Fatalf("image rm of an image in use: exit %d, %q", code, errOut)
	}
	n.must("rm", "pulled")
	testutil.WaitFor(t, 10*time.Second, func() error {
		_, errOut, code := n.shoal("image", "rm", ref)
		if code != 0 {
			return fmt.Errorf("image rm after app rm: %s", errOut)
		}
		return nil
	})
	if out := n.must("image", "ls"); strings.Contains(out, "edge/testprog") {
		t.Fatalf("removed image still listed:\n%s", out)
	}

	// Explicit pull, and a clear error for a tag that does not exist.
	out := n.must("image", "pull", ref)
	if !strings.Contains(out, "pulled") {
		t.Fatalf("pull output %q", out)
	}
	if _, errOut, code := n.shoal("image", "pull", host+"/edge/testprog:nope"); code == 0 || !strings.Contains(errOut, "nope") {
		t.Fatalf("pull of an unknown tag: exit %d, %q", code, errOut)
	}
}

package e2e

import (
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// pushTestImage serves a registry on loopback and pushes the test program's
// image to it; it returns the registry's host:port.
func pushTestImage(t *testing.T, repoTag string) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	archive := testutil.BuildTestImage(t, "testprog:1", testprogDir())
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return host
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

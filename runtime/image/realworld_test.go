//go:build linux

package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// TestRealWorldImage imports an image built by other tools: umoci builds an
// OCI image holding busybox-static's /bin/busybox, skopeo exports it as a
// docker-archive (plain layer tars, as `docker save` writes them). Shelling
// out is confined to this test; CI installs the tools (apt-get install umoci
// skopeo busybox-static).
func TestRealWorldImage(t *testing.T) {
	archive := testutil.BuildBusyboxImage(t)

	s := newTestStore(t)
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	imgs, err := s.Import(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Ref != "busybox:1" {
		t.Fatalf("imported %+v, want busybox:1", imgs)
	}
	img, err := s.Get("busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	dir, rc, err := s.Rootfs(context.Background(), "busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("bin/busybox mode %v, want an executable file", fi.Mode())
	}
	if len(rc.Entrypoint) != 1 || rc.Entrypoint[0] != "/bin/busybox" {
		t.Errorf("RunConfig %+v", rc)
	}
	t.Logf("imported %s %s (%d bytes, %s)", img.Ref, img.Digest, img.Size, img.Platform)
	// The unpacked binary runs: the layer arrived intact.
	out, err := exec.Command(filepath.Join(dir, "bin", "busybox"), "echo", "ok").CombinedOutput()
	if err != nil || string(out) != "ok\n" {
		t.Errorf("busybox echo = %q, %v", out, err)
	}
}

//go:build linux

package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRealWorldImage imports an image built by other tools: umoci builds an
// OCI image holding busybox-static's /bin/busybox, skopeo exports it as a
// docker-archive (plain layer tars, as `docker save` writes them). Shelling
// out is confined to this test; CI installs the tools (apt-get install umoci
// skopeo busybox-static).
func TestRealWorldImage(t *testing.T) {
	for _, tool := range []string{"umoci", "skopeo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("umoci unpack needs root to keep ownership")
	}
	tmp := t.TempDir()
	layoutDir, bundle, archive := filepath.Join(tmp, "oci"), filepath.Join(tmp, "bundle"), filepath.Join(tmp, "busybox.tar")
	run := func(name string, args ...string) {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run("umoci", "init", "--layout", layoutDir)
	run("umoci", "new", "--image", layoutDir+":1")
	run("umoci", "config", "--image", layoutDir+":1", "--config.entrypoint", "/bin/busybox", "--config.cmd", "sh")
	run("umoci", "unpack", "--image", layoutDir+":1", bundle)
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	run("cp", "/bin/busybox", filepath.Join(bundle, "rootfs", "bin", "busybox"))
	run("umoci", "repack", "--image", layoutDir+":1", bundle)
	run("skopeo", "copy", "--quiet", "oci:"+layoutDir+":1", "docker-archive:"+archive+":busybox:1")

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

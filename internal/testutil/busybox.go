package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireTools skips the test when a tool is missing, or fails it when
// SHOAL_TEST_STRICT is set (make test installs the tools and sets it, so
// a missing tool in CI is a failure, not a silent skip).
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err == nil {
			continue
		}
		if os.Getenv("SHOAL_TEST_STRICT") != "" {
			t.Fatalf("%s is not installed (make test-deps installs it)", tool)
		}
		t.Skipf("%s is not installed (make test-deps installs it)", tool)
	}
}

// BuildBusyboxImage makes an image with tools other than shoal's own:
// umoci builds an OCI image holding busybox-static's /bin/busybox
// (entrypoint /bin/busybox, cmd sh), skopeo exports it as a docker-archive
// tagged busybox:1. It returns the archive's path.
func BuildBusyboxImage(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "umoci", "skopeo", "busybox")
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
	busybox, _ := exec.LookPath("busybox")
	run("cp", busybox, filepath.Join(bundle, "rootfs", "bin", "busybox"))
	run("umoci", "repack", "--image", layoutDir+":1", bundle)
	run("skopeo", "copy", "--quiet", "oci:"+layoutDir+":1", "docker-archive:"+archive+":busybox:1")
	return archive
}

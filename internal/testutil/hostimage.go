package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BuildHostFilesImage makes an image from the host's own Debian files, as
// a distribution image holds them: glibc's dynamically linked getent and
// hostname with their loader and libraries, the host's /etc/nsswitch.conf,
// busybox-static for a shell, and no /etc/hosts, /etc/hostname or
// /etc/resolv.conf (a container runtime provides those). Tagged
// hostfiles:1, exported as a docker-archive; it returns the archive's path.
func BuildHostFilesImage(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "umoci", "skopeo", "busybox", "ldd", "getent", "hostname")
	tmp := t.TempDir()
	layoutDir, bundle, archive := filepath.Join(tmp, "oci"), filepath.Join(tmp, "bundle"), filepath.Join(tmp, "hostfiles.tar")
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	run("umoci", "init", "--layout", layoutDir)
	run("umoci", "new", "--image", layoutDir+":1")
	run("umoci", "config", "--image", layoutDir+":1", "--config.entrypoint", "/bin/busybox",
		"--config.cmd", "sh", "--config.env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	run("umoci", "unpack", "--image", layoutDir+":1", bundle)
	root := filepath.Join(bundle, "rootfs")

	busybox, _ := exec.LookPath("busybox")
	files := map[string]string{busybox: "/bin/busybox", "/etc/nsswitch.conf": "/etc/nsswitch.conf"}
	for _, prog := range []string{"getent", "hostname"} {
		p, _ := exec.LookPath(prog)
		files[p] = "/usr/bin/" + prog
		// The loader and the libraries at the paths the program asks
		// for: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
		// "/lib64/ld-linux-x86-64.so.2 (0x...)".
		for _, line := range strings.Split(run("ldd", p), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 3 && f[1] == "=>" && filepath.IsAbs(f[2]):
				files[f[2]] = f[2]
			case len(f) >= 1 && filepath.IsAbs(f[0]):
				files[f[0]] = f[0]
			}
		}
	}
	for from, to := range files {
		// Symlinks on the host (merged /usr, the loader's link) are
		// followed: the image gets the files themselves.
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, to)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o755)
		if strings.HasPrefix(to, "/etc/") {
			mode = 0o644
		}
		if err := os.WriteFile(dst, b, mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, applet := range []string{"sh", "cat", "sleep"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"etc/hosts", "etc/hostname", "etc/resolv.conf"} {
		if err := os.Remove(filepath.Join(root, p)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	run("umoci", "repack", "--image", layoutDir+":1", bundle)
	run("skopeo", "copy", "--quiet", "oci:"+layoutDir+":1", "docker-archive:"+archive+":hostfiles:1")
	return archive
}

package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/internal/testutil"
	"golang.org/x/sys/unix"
)

func mounted(t *testing.T, dir string) []string {
	t.Helper()
	m, err := mountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMountUnmount(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	base := t.TempDir()
	image := filepath.Join(base, "image")
	if err := os.MkdirAll(filepath.Join(image, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(image, "etc", "hostname"), []byte("image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "c1")
	merged, err := Mount(image, dir)
	if err != nil {
		t.Fatal(err)
	}
	if merged != dir+"/merged" {
		t.Errorf("merged = %q", merged)
	}
	if b, err := os.ReadFile(merged + "/etc/hostname"); err != nil || string(b) != "image\n" {
		t.Errorf("image file through the overlay = %q, %v", b, err)
	}
	// Writes and deletes land in upper; the image is untouched.
	if err := os.WriteFile(merged+"/etc/hostname", []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(merged+"/new", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(image + "/etc/hostname"); string(b) != "image\n" {
		t.Errorf("image file changed to %q", b)
	}
	if _, err := os.Stat(image + "/new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("write reached the image: %v", err)
	}
	if _, err := os.Stat(dir + "/upper/new"); err != nil {
		t.Errorf("write not in upper: %v", err)
	}
	// A busy mount (an open file, a cwd) is detached, not an error.
	f, err := os.Open(merged + "/new")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Unmount(dir); err != nil {
		t.Fatal(err)
	}
	if m := mounted(t, dir); len(m) != 0 {
		t.Errorf("still mounted: %v", m)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir left behind: %v", err)
	}
	if b, _ := os.ReadFile(image + "/etc/hostname"); string(b) != "image\n" {
		t.Errorf("Unmount changed the image: %q", b)
	}
	if err := Unmount(dir); err != nil {
		t.Errorf("second Unmount: %v", err)
	}
}

func TestUnmountStacked(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	base := t.TempDir()
	image := filepath.Join(base, "image")
	if err := os.Mkdir(image, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "c2")
	merged, err := Mount(image, dir)
	if err != nil {
		t.Fatal(err)
	}
	// What a crashed container leaves: mounts on top of the overlay.
	if err := os.Mkdir(merged+"/proc", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", merged+"/proc", "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if err := Unmount(dir); err != nil {
		t.Fatal(err)
	}
	if m := mounted(t, dir); len(m) != 0 {
		t.Errorf("still mounted: %v", m)
	}
}

func TestMountErrors(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	base := t.TempDir()
	dir := filepath.Join(base, "c3")
	if _, err := Mount(filepath.Join(base, "missing"), dir); err == nil || !strings.Contains(err.Error(), "image rootfs") {
		t.Errorf("missing image: err = %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed Mount left %s: %v", dir, err)
	}
	if _, err := Mount(base, filepath.Join(base, "a,b")); err == nil {
		t.Error("Mount accepted a path with a comma")
	}
	if _, err := Mount("rel", dir); err == nil {
		t.Error("Mount accepted a relative path")
	}
}

func TestPrepareOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	base := t.TempDir()
	image := filepath.Join(base, "image")
	if err := os.MkdirAll(image, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(image+"/hello", []byte("image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "c1")
	merged, opts, err := PrepareOverlay(image, dir)
	if err != nil {
		t.Fatal(err)
	}
	if merged != dir+"/merged" {
		t.Errorf("merged = %q", merged)
	}
	if m := mounted(t, dir); len(m) != 0 {
		t.Errorf("PrepareOverlay mounted %v", m)
	}
	// upper becomes the overlay's /: it has the image's mode.
	for d, mode := range map[string]os.FileMode{"merged": 0o755, "upper": 0o755, "work": 0o700} {
		if fi, err := os.Stat(dir + "/" + d); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, %v; want mode %v", d, fi, err, mode)
		}
	}
	// What a container init does in its own mount namespace, here in ours.
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount with %q: %v", opts, err)
	}
	if err := os.WriteFile(merged+"/new", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(merged + "/hello"); err != nil || string(b) != "image\n" {
		t.Errorf("image file through the overlay = %q, %v", b, err)
	}
	if _, err := os.Stat(dir + "/upper/new"); err != nil {
		t.Errorf("write not in upper: %v", err)
	}
	if err := Unmount(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir left behind: %v", err)
	}
	// The same refusals as MountWith.
	if _, _, err := PrepareOverlay(image, image+"/c"); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Errorf("dir inside the image: err = %v", err)
	}
	if _, _, err := PrepareOverlay(image, "relative"); err == nil {
		t.Error("relative dir accepted")
	}
}

package testutil

import (
	"testing"

	"golang.org/x/sys/unix"
)

// MountTmpfs mounts a tmpfs with opts ("size=64m,nr_inodes=200") on dir,
// a small file system of its own for a test that fills it, and unmounts
// it when the test ends (cleanups run last-registered first: register
// those that must still find it mounted after this call). It needs root.
func MountTmpfs(t testing.TB, dir, opts string) {
	t.Helper()
	RequireRoot(t)
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Fatalf("mount a tmpfs (%s) on %s: %v", opts, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

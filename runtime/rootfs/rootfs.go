// Package rootfs owns a container's writable root filesystem: an overlay
// whose read-only lower layer is an image's unpacked rootfs and whose upper
// layer, work dir and merged view live in a directory of the container's own.
//
// Layout of dir (created by Mount, removed by Unmount):
//
//	dir/upper   the container's writes (and whiteouts of deleted files)
//	dir/work    overlayfs scratch space
//	dir/merged  the mount point: what the container sees as /
//
// Where overlayfs is missing (the mount fails with ENODEV) or refuses the
// filesystem dir lives on (EINVAL, EOPNOTSUPP: an upper on overlayfs
// itself, some FUSE filesystems), or when Options.NoOverlay asks for it,
// Mount makes a private copy of the image instead (reflinked where the
// filesystem can):
//
//	dir/.copy   marker: merged is a copy, not a mount (written before copying)
//	dir/merged  the copy: what the container sees as /
//
// The image directory is never written: many containers share it.
//
// Caveats: a copy costs the image's size in disk and time on every start.
// Unmount never trusts the marker for safety: it removes dir only once
// /proc/self/mountinfo shows nothing mounted below it, in either mode.
package rootfs

import (
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"

	"github.com/shoal-edge/shoal/internal/mountinfo"
)

// Options changes how MountWith builds a rootfs. The zero value is Mount's
// behaviour.
type Options struct {
	// NoOverlay makes a private copy of the image even where overlayfs
	// works: for operators whose overlayfs misbehaves, and for tests.
	NoOverlay bool
	// Logger receives one Info line per copy (why, how much, how long);
	// discarded when nil.
	Logger *slog.Logger

	// mount replaces unix.Mount in tests, to simulate a kernel or
	// filesystem without overlayfs support.
	mount func(source, target, fstype string, flags uintptr, data string) error
}

// mountPoints returns the mount points listed in a mountinfo file.
func mountPoints(r io.Reader) ([]string, error) {
	ms, err := mountinfo.Parse(r)
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Point)
	}
	return out, err
}

// under returns the points at or below dir, deepest first, so that a
// mount is always unmounted before the one it sits on.
func under(points []string, dir string) []string {
	dir = filepath.Clean(dir)
	var out []string
	for _, p := range points {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// overlayOptions builds the mount data. Overlay's option syntax gives ','
// and ':' a meaning, so paths holding them are refused rather than escaped.
func overlayOptions(lower, upper, work string) (string, bool) {
	for _, p := range []string{lower, upper, work} {
		if strings.ContainsAny(p, ",:\\") {
			return "", false
		}
	}
	return "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work, true
}

package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Mount creates dir and mounts an overlay of lower (read-only) and
// dir/upper at dir/merged, which it returns. dir must not exist yet or be
// empty; on failure nothing is left behind.
func Mount(lower, dir string) (merged string, err error) {
	if !filepath.IsAbs(lower) || !filepath.IsAbs(dir) {
		return "", fmt.Errorf("mount rootfs: lower %q and dir %q must be absolute paths", lower, dir)
	}
	lower, dir = filepath.Clean(lower), filepath.Clean(dir)
	if fi, err := os.Stat(lower); err != nil {
		return "", fmt.Errorf("mount rootfs: image rootfs: %w", err)
	} else if !fi.IsDir() {
		return "", fmt.Errorf("mount rootfs: image rootfs %s is not a directory", lower)
	}
	upper, work, merged := dir+"/upper", dir+"/work", dir+"/merged"
	opts, ok := overlayOptions(lower, upper, work)
	if !ok {
		return "", fmt.Errorf("mount rootfs: paths %s and %s must not contain ',', ':' or '\\' (overlayfs option syntax)", lower, dir)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("mount rootfs: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return "", fmt.Errorf("mount rootfs: %w", err)
		}
	}
	// merged becomes the container's /, whose mode programs see.
	if err := os.Mkdir(merged, 0o755); err != nil {
		return "", fmt.Errorf("mount rootfs: %w", err)
	}
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("mount overlay at %s (lower %s): %w", merged, lower, err)
	}
	return merged, nil
}

// Unmount unmounts everything mounted at or below dir (detaching what is
// busy) and removes dir. It is idempotent and meant for leftovers too: a
// missing dir or a dir that was never mounted is fine.
func Unmount(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("unmount rootfs: dir %q must be an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	// mountinfo shows resolved paths.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	} else if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// Stacked mounts need one pass each; a handful is plenty.
	for range 8 {
		mounted, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mounted) == 0 {
			// Only now is RemoveAll safe: it would descend into a mount
			// and delete the files of whatever is mounted there.
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("unmount rootfs: %w", err)
			}
			return nil
		}
		for _, m := range mounted {
			if err := unmount(m); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("unmount rootfs %s: still mounted after 8 passes", dir)
}

func unmount(target string) error {
	err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
	if errors.Is(err, unix.EBUSY) {
		// Someone (a lingering process, an open file) holds it: detach it
		// from the tree now and let the kernel free it when released.
		err = unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
	}
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil // EINVAL: not a mount point (any more)
	}
	return fmt.Errorf("unmount %s: %w", target, err)
}

func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	defer f.Close()
	points, err := mountPoints(f)
	if err != nil {
		return nil, fmt.Errorf("list mounts: /proc/self/mountinfo: %w", err)
	}
	return under(points, dir), nil
}

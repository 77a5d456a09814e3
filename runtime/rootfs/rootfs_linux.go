package rootfs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Mount is MountWith with the zero Options: an overlay, or a copy where
// overlayfs is unavailable.
func Mount(lower, dir string) (merged string, err error) {
	return MountWith(lower, dir, Options{})
}

// MountWith creates dir and makes dir/merged, which it returns, the
// container's writable view of lower: an overlay of lower (read-only) and
// dir/upper, or a private copy of lower where overlayfs is missing or
// refuses dir's filesystem, or when o.NoOverlay is set. dir must not exist
// yet or be empty, and must not overlap lower; on failure nothing is left
// behind.
func MountWith(lower, dir string, o Options) (merged string, err error) {
	if o.mount == nil {
		o.mount = unix.Mount
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	realLower, _, opts, err := makeDir(lower, dir, !o.NoOverlay)
	if err != nil {
		return "", err
	}
	lower, dir = filepath.Clean(lower), filepath.Clean(dir)
	upper, work, merged := dir+"/upper", dir+"/work", dir+"/merged"
	defer func() {
		if err != nil {
			// Nothing is mounted below dir here: a failed mount left
			// nothing, and a copy is plain files.
			_ = os.RemoveAll(dir)
		}
	}()
	// merged becomes the container's /, whose mode programs see.
	if err := os.Mkdir(merged, 0o755); err != nil {
		return "", fmt.Errorf("mount rootfs: %w", err)
	}
	reason := "forced (NoOverlay)"
	if !o.NoOverlay {
		for _, d := range []string{upper, work} {
			if err := os.Mkdir(d, 0o700); err != nil {
				return "", fmt.Errorf("mount rootfs: %w", err)
			}
		}
		err := o.mount("overlay", merged, "overlay", 0, opts)
		if err == nil {
			return merged, nil
		}
		if !overlayUnsupported(err) {
			return "", fmt.Errorf("mount overlay at %s (lower %s): %w", merged, lower, err)
		}
		reason = fmt.Sprintf("overlay mount failed: %v", err)
		// The failed mount left these empty (or holding overlayfs's own
		// work/work): nothing is mounted there.
		for _, d := range []string{upper, work} {
			if err := os.RemoveAll(d); err != nil {
				return "", fmt.Errorf("mount rootfs: %w", err)
			}
		}
	}
	// The marker goes first: a crash during the copy leaves a dir that
	// says what it is.
	if err := os.WriteFile(dir+"/"+copyMarker, []byte(reason+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("mount rootfs: %w", err)
	}
	start := time.Now()
	st, err := copyTree(realLower, merged)
	if err != nil {
		return "", fmt.Errorf("copy image rootfs %s to %s: %w", lower, merged, err)
	}
	o.Logger.Info("copied image rootfs instead of mounting an overlay", "reason", reason,
		"image", lower, "bytes", st.bytes, "files", st.files, "reflinked", st.reflinked,
		"skipped", st.skipped, "elapsed", time.Since(start).Round(time.Millisecond))
	return merged, nil
}

// makeDir checks lower and dir for MountWith and PrepareOverlay and makes
// dir; it returns lower with its symlinks resolved, its mode and the
// overlay's mount options ("" when they cannot be written and overlay is
// false).
func makeDir(lower, dir string, overlay bool) (realLower string, mode os.FileMode, opts string, err error) {
	if !filepath.IsAbs(lower) || !filepath.IsAbs(dir) {
		return "", 0, "", fmt.Errorf("mount rootfs: lower %q and dir %q must be absolute paths", lower, dir)
	}
	lower, dir = filepath.Clean(lower), filepath.Clean(dir)
	fi, err := os.Stat(lower)
	if err != nil {
		return "", 0, "", fmt.Errorf("mount rootfs: image rootfs: %w", err)
	} else if !fi.IsDir() {
		return "", 0, "", fmt.Errorf("mount rootfs: image rootfs %s is not a directory", lower)
	}
	mode = fi.Mode().Perm()
	opts, ok := overlayOptions(lower, dir+"/upper", dir+"/work")
	if !ok && overlay {
		return "", 0, "", fmt.Errorf("mount rootfs: paths %s and %s must not contain ',', ':' or '\\' (overlayfs option syntax)", lower, dir)
	}
	// A copy of lower into itself would never end, and overlayfs refuses
	// overlapping layers anyway: compare the resolved paths, before dir is
	// made (inside the image, it would write the image).
	realLower, err = filepath.EvalSymlinks(lower)
	if err != nil {
		return "", 0, "", fmt.Errorf("mount rootfs: image rootfs: %w", err)
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(dir))
	if err != nil {
		return "", 0, "", fmt.Errorf("mount rootfs: %w", err)
	}
	if realDir := filepath.Join(parent, filepath.Base(dir)); within(realDir, realLower) || within(realLower, realDir) {
		return "", 0, "", fmt.Errorf("mount rootfs: dir %s and image rootfs %s overlap", dir, lower)
	}
	if err := os.Mkdir(dir, 0o700); errors.Is(err, os.ErrExist) {
		// Never remove what was there: it may be a live leftover.
		if err := requireEmpty(dir); err != nil {
			return "", 0, "", fmt.Errorf("mount rootfs: %w", err)
		}
	} else if err != nil {
		return "", 0, "", fmt.Errorf("mount rootfs: %w", err)
	}
	return realLower, mode, opts, nil
}

// PrepareOverlay makes dir as MountWith does for an overlay, but mounts
// nothing: it returns dir/merged and the mount options, for a process that
// mounts the overlay in a mount namespace of its own (a container init
// forked before the container's rootfs existed cannot see host mounts
// made after). The overlay's / shows upper's mode: upper gets lower's.
// Unmount and removal work on dir as after MountWith.
func PrepareOverlay(lower, dir string) (merged, opts string, err error) {
	_, lowerMode, opts, err := makeDir(lower, dir, true)
	if err != nil {
		return "", "", err
	}
	dir = filepath.Clean(dir)
	for d, mode := range map[string]os.FileMode{"merged": 0o755, "upper": lowerMode, "work": 0o700} {
		// Chmod too: Mkdir's mode passes through the umask.
		err := os.Mkdir(dir+"/"+d, mode)
		if err == nil {
			err = os.Chmod(dir+"/"+d, mode)
		}
		if err != nil {
			_ = os.RemoveAll(dir)
			return "", "", fmt.Errorf("mount rootfs: %w", err)
		}
	}
	return dir + "/merged", opts, nil
}

// copyMarker names the file in dir that says dir/merged is a copy.
const copyMarker = ".copy"

// overlayUnsupported tells a kernel or filesystem that cannot do overlayfs
// (where a copy is the answer) from other failures. ENODEV: no overlayfs
// in the kernel (the mount is what loads the module, so /proc/filesystems
// may well lack it on a kernel that has it). EINVAL, EOPNOTSUPP: overlayfs
// refuses the upper's filesystem; the options are ours and valid.
func overlayUnsupported(err error) bool {
	return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)
}

// IsCopy reports whether dir, made by MountWith, holds a copy of the image
// rather than an overlay.
func IsCopy(dir string) (bool, error) {
	_, err := os.Lstat(filepath.Join(dir, copyMarker))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func requireEmpty(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	return nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/") || dir == "/"
}

// Unmount unmounts everything mounted at or below dir (detaching what is
// busy) and removes dir, overlay or copy alike. It is idempotent and meant
// for leftovers too: a missing dir, a dir that was never mounted or a copy
// cut short by a crash is fine. It removes nothing while mountinfo still
// shows a mount below dir, whatever dir/.copy says.
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

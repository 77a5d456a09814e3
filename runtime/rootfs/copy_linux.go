package rootfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// copyStats says what copyTree did, for the log.
type copyStats struct {
	bytes     int64 // regular files' sizes, each inode once
	files     int   // entries made, hardlinks included
	reflinked bool  // at least one file was cloned, not copied
	skipped   int   // device nodes and sockets: images hold none
}

// copier copies one tree; its fields are the walk's memory.
type copier struct {
	src, dst string
	dev      uint64
	links    map[uint64]string // inode in src -> first copy, for hardlinks
	noClone  bool              // FICLONE failed once: the filesystem cannot
	st       copyStats
}

// copyTree copies the tree at src (a resolved, existing directory) into dst,
// an existing empty directory, keeping modes (setuid included), owners,
// symlinks (never followed), hardlinks within the tree, times and
// extended attributes where the filesystem takes them. Files are reflinked
// where the filesystem can. Like overlayfs's lower layer, the copy stays
// on src's filesystem: what is mounted below src shows as its mount point.
func copyTree(src, dst string) (copyStats, error) {
	var root unix.Stat_t
	if err := unix.Lstat(src, &root); err != nil {
		return copyStats{}, fmt.Errorf("stat %s: %w", src, err)
	}
	c := &copier{src: src, dst: dst, dev: root.Dev, links: map[uint64]string{}}
	// Directories get their metadata after their contents, deepest
	// first: every entry made in a directory changes its mtime.
	var dirs []string
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return fmt.Errorf("stat %s: %w", path, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if rel != "." {
				if err := unix.Mkdir(to, 0o700); err != nil {
					return fmt.Errorf("mkdir %s: %w", to, err)
				}
				c.st.files++
			}
			dirs = append(dirs, rel)
			if st.Dev != c.dev {
				return fs.SkipDir
			}
			return nil
		case unix.S_IFREG:
			return c.file(path, to, &st)
		case unix.S_IFLNK:
			return c.symlink(path, to, &st)
		case unix.S_IFIFO:
			if err := unix.Mkfifo(to, 0o600); err != nil {
				return fmt.Errorf("mkfifo %s: %w", to, err)
			}
			c.st.files++
			return c.meta(path, to, &st)
		default:
			c.st.skipped++
			return nil
		}
	})
	if err != nil {
		return c.st, err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		var st unix.Stat_t
		from := filepath.Join(src, dirs[i])
		if err := unix.Lstat(from, &st); err != nil {
			return c.st, fmt.Errorf("stat %s: %w", from, err)
		}
		if err := c.meta(from, filepath.Join(dst, dirs[i]), &st); err != nil {
			return c.st, err
		}
	}
	return c.st, nil
}

// file copies a regular file, or links it to the copy of an inode seen
// before.
func (c *copier) file(from, to string, st *unix.Stat_t) error {
	if st.Nlink > 1 {
		if first, ok := c.links[st.Ino]; ok {
			if err := os.Link(first, to); err != nil {
				return fmt.Errorf("hardlink %s: %w", to, err)
			}
			c.st.files++
			return nil
		}
		c.links[st.Ino] = to
	}
	in, err := os.OpenFile(from, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	err = c.contents(in, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", from, err)
	}
	c.st.files++
	c.st.bytes += st.Size
	return c.meta(from, to, st)
}

// contents clones in into out where the filesystem shares extents
// (btrfs, xfs, bcachefs), else copies it (copy_file_range, via io.Copy).
func (c *copier) contents(in, out *os.File) error {
	if !c.noClone {
		err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
		if err == nil {
			c.st.reflinked = true
			return nil
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOTTY) &&
			!errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("clone: %w", err)
		}
		// The same answer would come for every file.
		c.noClone = true
	}
	_, err := io.Copy(out, in)
	return err
}

// symlink recreates a link as is: its target is text, never followed.
func (c *copier) symlink(from, to string, st *unix.Stat_t) error {
	target, err := os.Readlink(from)
	if err != nil {
		return err
	}
	if err := os.Symlink(target, to); err != nil {
		return err
	}
	c.st.files++
	return c.meta(from, to, st)
}

// meta gives to from's owner, mode, extended attributes and times, in
// that order: chown clears setuid bits and file capabilities
// (security.capability), and every change touches ctime, not mtime.
func (c *copier) meta(from, to string, st *unix.Stat_t) error {
	link := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if err := unix.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", to, err)
	}
	if !link {
		// to is ours and no symlink: Chmod cannot be led elsewhere.
		if err := unix.Chmod(to, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", to, err)
		}
	}
	if err := copyXattrs(from, to); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, to, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", to, err)
	}
	return nil
}

// copyXattrs copies extended attributes without following symlinks. A
// filesystem without them, on either side, is no error: they are optional
// (and overlayfs's would not show through either way).
func copyXattrs(from, to string) error {
	names, err := listXattrs(from)
	if err != nil {
		if xattrUnsupported(err) {
			return nil
		}
		return fmt.Errorf("list xattrs of %s: %w", from, err)
	}
	for _, name := range names {
		val, err := getXattr(from, name)
		if errors.Is(err, unix.ENODATA) || xattrUnsupported(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("get xattr %s of %s: %w", name, from, err)
		}
		if err := unix.Lsetxattr(to, name, val, 0); err != nil && !xattrUnsupported(err) {
			return fmt.Errorf("set xattr %s of %s: %w", name, to, err)
		}
	}
	return nil
}

func xattrUnsupported(err error) bool {
	// EPERM: user.* on a symlink, trusted.* without CAP_SYS_ADMIN in the
	// filesystem's namespace.
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM)
}

func listXattrs(path string) ([]string, error) {
	for {
		n, err := unix.Llistxattr(path, nil)
		if err != nil || n == 0 {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for start, i := 0, 0; i < n; i++ {
			if buf[i] == 0 {
				if i > start {
					names = append(names, string(buf[start:i]))
				}
				start = i + 1
			}
		}
		return names, nil
	}
}

func getXattr(path, name string) ([]byte, error) {
	for {
		n, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

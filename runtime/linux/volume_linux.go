package linux

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// populateVolume fills the named volume m.Source from the image at image
// when the volume's directory is empty: it takes the owner, group and mode
// of the image's directory at m.Target, and a copy of the directories,
// regular files and symlinks under it with theirs. Nothing happens when
// the image has no directory there.
//
// Another container may have the volume mounted and write into it while
// this runs, so the copy never follows a path on the volume's side: every
// file is made relative to a directory descriptor this function created,
// with O_NOFOLLOW and O_EXCL, and a lock on the volume's directory keeps
// two starts from filling it at once.
func populateVolume(image string, m Mount) error {
	fail := func(err error) error {
		return fmt.Errorf("volume %s: fill from the image's %s: %w", m.Source, m.Target, err)
	}
	dst, err := unix.Open(m.Source, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	dstDir := os.NewFile(uintptr(dst), m.Source)
	defer dstDir.Close()
	if err := unix.Flock(dst, unix.LOCK_EX); err != nil {
		return fail(err)
	}
	if names, err := dstDir.Readdirnames(1); len(names) > 0 {
		return nil // not new: its content is the apps'
	} else if err != nil && !errors.Is(err, io.EOF) {
		return fail(err)
	}
	p, err := resolveInRoot(image, m.Target)
	if err != nil {
		return fail(err)
	}
	src, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return nil // nothing of the image's there, or not a directory
	}
	if err != nil {
		return fail(err)
	}
	srcDir := os.NewFile(uintptr(src), p)
	defer srcDir.Close()
	if err := copyDir(srcDir, dst); err != nil {
		return fail(err)
	}
	if err := copyOwnerMode(src, dst); err != nil {
		return fail(err)
	}
	return nil
}

// copyDir copies what the directory src holds into the directory dst.
func copyDir(src *os.File, dst int) error {
	names, err := src.Readdirnames(-1)
	if err != nil {
		return err
	}
	s := int(src.Fd())
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(s, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			err = copyChildDir(s, dst, name)
		case unix.S_IFREG:
			err = copyVolumeFile(s, dst, name)
		case unix.S_IFLNK:
			err = copySymlink(s, dst, name, st)
		default:
			// Devices, FIFOs and sockets: an image's layers hold none
			// that shoal unpacks.
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func copyChildDir(src, dst int, name string) error {
	if err := unix.Mkdirat(dst, name, 0o700); err != nil {
		return err
	}
	d, err := unix.Openat(dst, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(d)
	s, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	sf := os.NewFile(uintptr(s), name)
	defer sf.Close()
	if err := copyDir(sf, d); err != nil {
		return err
	}
	return copyOwnerMode(s, d)
}

func copyVolumeFile(src, dst int, name string) error {
	s, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	sf := os.NewFile(uintptr(s), name)
	defer sf.Close()
	d, err := unix.Openat(dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	df := os.NewFile(uintptr(d), name)
	defer df.Close()
	if _, err := io.Copy(df, sf); err != nil {
		return err
	}
	if err := copyOwnerMode(s, d); err != nil {
		return err
	}
	return df.Close()
}

func copySymlink(src, dst int, name string, st unix.Stat_t) error {
	buf := make([]byte, st.Size+1)
	n, err := unix.Readlinkat(src, name, buf)
	if err != nil {
		return err
	}
	if n > int(st.Size) {
		return fmt.Errorf("symlink changed while read: %w", fs.ErrInvalid)
	}
	if err := unix.Symlinkat(string(buf[:n]), dst, name); err != nil {
		return err
	}
	return unix.Fchownat(dst, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
}

// copyOwnerMode gives dst the owner, group and mode (set-id bits
// included: after the chown, which clears them) of src.
func copyOwnerMode(src, dst int) error {
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return err
	}
	if err := unix.Fchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	return unix.Fchmod(dst, st.Mode&0o7777)
}

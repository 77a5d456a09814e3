// Package sealexe owns read-only handles to executables that run where a
// container can see them: the shoal binary, which is each container's init
// and exec helper, and the embedded monitor program.
//
// A process that runs in a container's pid namespace shows its executable
// as /proc/PID/exe, a link that opens the very file it runs. If that file
// is the host's shoal binary, a container that catches the link and waits
// until no process runs the binary can open it for writing and replace
// what the host runs as root next (CVE-2019-5736 in runc). So inits and
// helpers run from a handle that cannot be written through:
//
//   - Overlay: the binary seen through a read-only overlayfs mount that is
//     never attached to any mount tree (fsopen, fsmount). No copy: the page
//     cache is the binary's own. Writes through it fail with EROFS, and it
//     cannot be reached by path.
//   - Memfd: a copy in a memfd sealed against writes, growth, shrinking and
//     further seals. It costs the binary's size in memory for as long as it
//     is held, so it is the fallback.
//
// Either is made once per process and kept: exec it as /proc/self/fd/N.
package sealexe

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoExec says the kernel refuses executable memfds (vm.memfd_noexec=2).
var ErrNoExec = errors.New("executable memfds are not allowed (vm.memfd_noexec)")

// Memfd copies src into a new memfd called name, seals it so that nobody
// can change it, and returns it open (close-on-exec).
func Memfd(name string, src io.Reader) (*os.File, error) {
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := unix.MemfdCreate(name, flags|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		// Before Linux 6.3 there is no MFD_EXEC: every memfd can be
		// executed.
		fd, err = unix.MemfdCreate(name, flags)
	}
	if errors.Is(err, unix.EACCES) {
		return nil, ErrNoExec
	}
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	fd, err = lift(fd)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return nil, fmt.Errorf("copy into memfd: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal memfd: %w", err)
	}
	return f, nil
}

// Overlay opens the file at path through a read-only overlayfs that no
// mount namespace holds, as an O_PATH handle (close-on-exec) that can be
// executed but never written. overlayfs only refuses writes altogether
// with two lower layers and no upper one; the second is an empty
// directory that exists only while the mount is made.
func Overlay(path string) (*os.File, error) {
	dir, name := filepath.Split(path)
	empty, err := os.MkdirTemp("", ".shoal-seal-")
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", path, err)
	}
	// The superblock keeps its own references to the layers.
	defer os.Remove(empty)
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("seal %s: fsopen overlay: %w", path, err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "lowerdir", lowerDir(dir)+":"+lowerDir(empty)); err != nil {
		return nil, fmt.Errorf("seal %s: overlay lowerdir: %w", path, err)
	}
	// xino would only add a kernel log line when the layers sit on two
	// file systems; its inode numbers are of no use here.
	_ = unix.FsconfigSetString(fsfd, "xino", "off")
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("seal %s: create overlay: %w", path, err)
	}
	mnt, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID)
	if err != nil {
		return nil, fmt.Errorf("seal %s: mount overlay: %w", path, err)
	}
	// Once closed, the mount lives only as long as handles into it.
	defer unix.Close(mnt)
	fd, err := unix.Openat(mnt, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("seal %s: open through overlay: %w", path, err)
	}
	if fd, err = lift(fd); err != nil {
		return nil, fmt.Errorf("seal %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// fdFloor is where sealed handles live. A child started with os/exec
// resolves /proc/self/fd/N at its execve, after its ExtraFiles were moved
// to fds 3, 4, ...: a handle among the first ones would be replaced by one
// of them, and the child would execute a pipe or a namespace file.
const fdFloor = 128

// lift moves fd to fdFloor or above, close-on-exec. Where the descriptor
// limit is below the floor it stays where it is.
func lift(fd int) (int, error) {
	if fd >= fdFloor {
		return fd, nil
	}
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, fdFloor)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EMFILE) {
		return fd, nil
	}
	unix.Close(fd)
	if err != nil {
		return -1, fmt.Errorf("move sealed handle: %w", err)
	}
	return high, nil
}

// lowerDir escapes the characters overlayfs gives a meaning in lowerdir.
func lowerDir(dir string) string {
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "/"
	}
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(dir)
}

// Self returns a sealed handle to the running executable; how says which
// kind ("overlay" or "memfd").
func Self() (f *os.File, how string, err error) {
	running, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, "", fmt.Errorf("seal own executable: %w", err)
	}
	defer running.Close()
	path, _ := os.Readlink("/proc/self/exe")
	return seal(running, path)
}

// seal returns a sealed handle to the file running is open on, which was
// found at path: through a read-only overlay when the file at path is
// still that one (same size, mode and times: an upgrade may have replaced
// it since), else a sealed memfd copy of running.
func seal(running *os.File, path string) (*os.File, string, error) {
	var want unix.Stat_t
	if err := unix.Fstat(int(running.Fd()), &want); err != nil {
		return nil, "", fmt.Errorf("seal %s: %w", path, err)
	}
	if filepath.IsAbs(path) {
		if o, err := Overlay(path); err == nil {
			var got unix.Stat_t
			if unix.Fstat(int(o.Fd()), &got) == nil && sameFile(want, got) {
				return o, "overlay", nil
			}
			o.Close()
		}
	}
	if _, err := running.Seek(0, io.SeekStart); err != nil {
		return nil, "", fmt.Errorf("seal %s: %w", path, err)
	}
	m, err := Memfd(filepath.Base(path), running)
	if err != nil {
		return nil, "", fmt.Errorf("seal %s: %w", path, err)
	}
	return m, "memfd", nil
}

// sameFile compares what an overlay passes through of its lower file:
// overlayfs has its own device number, and may remap inode numbers.
func sameFile(a, b unix.Stat_t) bool {
	return a.Size == b.Size && a.Mtim == b.Mtim && a.Ctim == b.Ctim && a.Mode == b.Mode
}

// ExecPath is the path that executes f from this process and from its
// children until they exec, for children given fewer than fdFloor-3
// ExtraFiles.
func ExecPath(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }

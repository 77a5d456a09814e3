package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// This file runs in the container init, in its new mount namespace.

type mountEntry struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// The filesystems every container gets, mounted in order (/dev before what
// lives inside it). Sizes bound what a container can put in RAM through them.
var baseMounts = []mountEntry{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"tmpfs", "/dev", "tmpfs", unix.MS_NOSUID | unix.MS_STRICTATIME, "mode=755,size=65536k"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
	{"shm", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "mode=1777,size=65536k"},
	{"mqueue", "/dev/mqueue", "mqueue", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
}

// devices are the character devices of a container's /dev (major, minor).
var devices = []struct {
	name         string
	major, minor uint32
}{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

var devLinks = [][2]string{
	{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
	{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
}

// prepareRootfs mounts the container's filesystems under root, the overlay.
func prepareRootfs(root, overlay string, hostNetwork bool) error {
	// Our mounts must not propagate back to the host (the namespace starts
	// as a copy whose shared mounts are peers of the host's), nor host
	// mounts into the container.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("container init: make / private: %w", err)
	}
	if overlay != "" {
		if err := unix.Mount("overlay", root, "overlay", 0, overlay); err != nil {
			return fmt.Errorf("container init: mount overlay at %s: %w", root, err)
		}
	}
	// pivot_root needs the new root to be a mount point of its own.
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("container init: bind rootfs %s: %w", root, err)
	}
	for _, m := range baseMounts {
		if err := mountAt(root, m); err != nil {
			return err
		}
	}
	if err := makeDevices(root + "/dev"); err != nil {
		return err
	}
	// /sys read-only: a fresh sysfs shows the container's own network
	// namespace. With the host's network, sysfs would show the host's
	// anyway, so bind it, without its sub-mounts (cgroupfs, debugfs, ...).
	if !hostNetwork {
		return mountAt(root, mountEntry{"sysfs", "/sys", "sysfs", unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""})
	}
	if err := mountAt(root, mountEntry{"/sys", "/sys", "", unix.MS_BIND, ""}); err != nil {
		return err
	}
	if err := unix.Mount("", root+"/sys", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("container init: remount /sys read-only: %w", err)
	}
	return nil
}

// mountAt mounts m at root+m.target, creating the mount point. The image
// controls what is at the target, and the kernel follows symlinks there: an
// image whose /proc links to /etc would get procfs mounted over the host's
// /etc. So a mount point must be a real directory or not exist.
func mountAt(root string, m mountEntry) error {
	target := root + m.target
	fi, err := os.Lstat(target)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.Mkdir(target, 0o755); err != nil {
			return fmt.Errorf("container init: mount point %s: %w", m.target, err)
		}
	case err != nil:
		return fmt.Errorf("container init: mount point %s: %w", m.target, err)
	case !fi.IsDir():
		return fmt.Errorf("container init: mount point %s in the image is not a directory (%s); refusing to mount over it", m.target, fi.Mode().Type())
	}
	if err := unix.Mount(m.source, target, m.fstype, m.flags, m.data); err != nil {
		return fmt.Errorf("container init: mount %s on %s: %w", m.fstype+m.source, m.target, err)
	}
	return nil
}

// makeDevices fills the fresh /dev tmpfs at dev.
func makeDevices(dev string) error {
	for _, d := range devices {
		p := dev + "/" + d.name
		err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor)))
		if errors.Is(err, unix.EPERM) {
			// No mknod (a user namespace, a restricted host): bind the
			// host's node instead.
			err = bindDevice("/dev/"+d.name, p)
		}
		if err != nil {
			return fmt.Errorf("container init: /dev/%s: %w", d.name, err)
		}
	}
	for _, l := range devLinks {
		if err := os.Symlink(l[0], dev+"/"+l[1]); err != nil {
			return fmt.Errorf("container init: /dev/%s: %w", l[1], err)
		}
	}
	return nil
}

func bindDevice(host, target string) error {
	f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o666)
	if err != nil {
		return err
	}
	_ = f.Close()
	return unix.Mount(host, target, "", unix.MS_BIND, "")
}

// pivotRoot makes root the container's / and detaches the host's tree.
// pivot_root(".", ".") stacks the old root on the new one, so no put_old
// directory is needed in the image; unmounting "." then drops the old root.
func pivotRoot(root string) error {
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("container init: open old root: %w", err)
	}
	defer unix.Close(oldRoot)
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("container init: chdir %s: %w", root, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("container init: pivot_root to %s: %w", root, err)
	}
	if err := unix.Fchdir(oldRoot); err != nil {
		return fmt.Errorf("container init: fchdir old root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("container init: detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("container init: chdir /: %w", err)
	}
	return nil
}

// Paths that leak host information or let a container change the host's
// kernel state, as runc and Docker hide them by default.
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
		"/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
	}
	readonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// maskPaths runs after pivotRoot: files are covered with /dev/null, dirs
// with an empty read-only tmpfs; read-only paths are bound onto themselves
// read-only. Paths the kernel does not have are skipped.
func maskPaths() error {
	for _, p := range maskedPaths {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("container init: mask %s: %w", p, err)
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("container init: mask %s: %w", p, err)
		}
	}
	for _, p := range readonlyPaths {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("container init: read-only %s: %w", p, err)
		}
		if err := unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("container init: read-only %s: %w", p, err)
		}
	}
	return nil
}

// loopbackUp sets IFF_UP on lo, the only device of a new network namespace,
// with the SIOCSIFFLAGS ioctl: no netlink needed for one flag.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("container init: loopback: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("container init: loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("container init: loopback: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("container init: loopback: set up: %w", err)
	}
	return nil
}

// netnsSysctls are the settings of a container's own network namespace
// that Docker gives it: any user may listen on a port below 1024 (a web
// server run as www-data on port 80) and send ICMP echo requests through
// an unprivileged ICMP socket (ping without CAP_NET_RAW). They hold for
// that namespace only, never with the host's network.
func netnsSysctls() error {
	for _, s := range []struct{ path, value string }{
		{"/proc/sys/net/ipv4/ip_unprivileged_port_start", "0"},
		{"/proc/sys/net/ipv4/ping_group_range", "0 2147483647"},
	} {
		// Kernels before 4.11 lack the first: ports stay as they are.
		err := os.WriteFile(s.path, []byte(s.value), 0)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("container init: %s: %w", s.path, err)
		}
	}
	return nil
}

// bindMount binds m.Source onto m.Target in the rootfs at root, creating
// the target (a directory, or an empty file for anything else) when
// missing. The target is resolved inside root, opened without following a
// final symlink, and mounted through its descriptor, so the mount lands on
// exactly what was checked.
func bindMount(root string, m Mount) error {
	fail := func(err error) error {
		return fmt.Errorf("container init: mount %s on %s: %w", m.Source, m.Target, err)
	}
	src, err := openSource(m)
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	srcInfo, err := src.Stat()
	if err != nil {
		return fail(err)
	}
	target, err := resolveInRoot(root, m.Target)
	if err != nil {
		return fail(err)
	}
	if target == root {
		return fail(errors.New("the target resolves to the container's root"))
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fail(err)
	}
	if srcInfo.IsDir() {
		err = unix.Mkdir(target, 0o755)
	} else {
		var fd int
		fd, err = unix.Open(target, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fail(err)
	}
	fd, err := unix.Open(target, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(err)
	}
	if isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR; isDir != srcInfo.IsDir() {
		return fail(fmt.Errorf("the target in the image is %s, the source %s", typeName(isDir), typeName(srcInfo.IsDir())))
	}
	// The path may have changed under a host directory mounted earlier:
	// the descriptor must still be at the path that was resolved.
	fdPath := fmt.Sprintf("/proc/self/fd/%d", fd)
	if at, err := os.Readlink(fdPath); err != nil || at != target {
		return fail(fmt.Errorf("the target moved while it was being mounted (now %q)", at))
	}
	// The source by its descriptor too: what was opened (and checked) is
	// what is mounted.
	srcPath := fmt.Sprintf("/proc/self/fd/%d", src.Fd())
	// Not recursive: what the host mounted below the source (its /proc,
	// /sys, another disk) is not part of the volume the node allowed.
	if err := unix.Mount(srcPath, fdPath, "", unix.MS_BIND, ""); err != nil {
		return fail(err)
	}
	if m.ReadOnly {
		if err := remountReadOnly(target, false); err != nil {
			return fail(err)
		}
	}
	return nil
}

// openSource opens a mount's source as an O_PATH descriptor (which opens
// no device); with m.Expect, without following a final symlink, and only if
// it is still the file the caller checked.
func openSource(m Mount) (*os.File, error) {
	flags := unix.O_PATH | unix.O_CLOEXEC
	if m.Expect != nil {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(m.Source, flags, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: m.Source, Err: err}
	}
	f := os.NewFile(uintptr(fd), m.Source)
	if m.Expect == nil {
		return f, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, err
	}
	if uint64(st.Dev) != m.Expect.Dev || uint64(st.Ino) != m.Expect.Ino {
		f.Close()
		return nil, fmt.Errorf("%s is no longer the file that was checked (now device %d inode %d, checked device %d inode %d): refused", m.Source, st.Dev, st.Ino, m.Expect.Dev, m.Expect.Ino)
	}
	return f, nil
}

func typeName(dir bool) string {
	if dir {
		return "a directory"
	}
	return "not a directory"
}

// remountReadOnly makes the mount at p read-only, with the mounts below it
// when recursive (mount_setattr, Linux 5.12; older kernels only get the top
// mount read-only). The flags the mount has (nosuid, nodev, ...) are kept.
func remountReadOnly(p string, recursive bool) error {
	if recursive {
		err := unix.MountSetattr(-1, p, unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return fmt.Errorf("read-only %s: %w", p, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for _, f := range [][2]uintptr{
		{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f[0] != 0 {
			flags |= f[1]
		}
	}
	if err := unix.Mount("", p, "", flags, ""); err != nil {
		return fmt.Errorf("read-only %s: %w", p, err)
	}
	return nil
}

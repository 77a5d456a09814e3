package linux

import (
	"errors"
	"fmt"
	"os"

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
func prepareRootfs(root string, hostNetwork bool) error {
	// Our mounts must not propagate back to the host (the namespace starts
	// as a copy whose shared mounts are peers of the host's), nor host
	// mounts into the container.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("container init: make / private: %w", err)
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

// Package hostpath decides which host paths an app may bind into its
// containers on this node. The decision belongs to the node, set by its
// operator with `shoal up --allow-host-path`, never to whoever may call the
// cluster API: a bind of /proc, / or a container runtime's socket is a root
// shell on the host.
//
// # Basics
//
// Inspect looks at a host path on the node (symlinks resolved, device type
// and numbers, link count, identity); Decide is the pure decision on what
// Inspect found. The caller mounts the very file that was checked: Target
// carries its device and inode numbers, and the runtime refuses a source
// that is no longer that file.
//
// # Rules
//
//   - An entry of Policy.Allow allows its path and everything under it.
//   - Guarded paths (/, /proc, /sys, directories and files under /dev, the
//     data dir wherever a mount shows it, container runtime sockets and
//     state, every mount of a
//     kernel file system) need an entry at or below them; binding a
//     directory that contains one needs an entry for that directory itself.
//   - Block devices, character devices outside a short list of safe drivers
//     (serial ports, i2c, spi, gpio, video, sound, null and the like) and
//     sockets need an entry naming the file itself.
//   - Without an entry, the built-in list applies unless Policy.NoDefaults:
//     /srv, /mnt and /media; /opt and /usr/share/zoneinfo read-only;
//     world-readable files under /etc read-only; safe character devices.
//     A file with more than one hard link is not allowed by it.
package hostpath

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// Kind is what a host path is.
type Kind uint8

// The kinds of host paths.
const (
	Dir Kind = iota
	File
	CharDevice
	BlockDevice
	Socket
	Other // a fifo
)

// Target is a host path as found on the node.
type Target struct {
	// Path is the path the app asked for; Resolved the same with every
	// symlink resolved: the file that is checked and mounted.
	Path, Resolved string
	Kind           Kind
	// Major, Minor and Driver (from /proc/devices) of a device.
	Major, Minor uint32
	Driver       string
	// Links is the hard link count; WorldReadable the mode's o+r bit.
	Links         uint64
	WorldReadable bool
	// Dev and Ino identify the file for the runtime, which mounts it only
	// if it is still the same file.
	Dev, Ino uint64
	// KernelMounts are the node's mounts of kernel file systems (proc,
	// sysfs, ...) at, above or below Resolved: a bind of a directory
	// brings the mounts below it along.
	KernelMounts []Mount
	// Mounts are the mount that shows Resolved and those below it, with
	// what each shows: a directory bound elsewhere (mount --bind) is the
	// same directory under another path.
	Mounts []MountSource
}

// MountSource is a mount at Path of the directory Root of the file system
// on device Dev ("MAJ:MIN", as /proc/self/mountinfo says).
type MountSource struct{ Path, Dev, Root string }

// Backing is a path on a file system: its device and the path from that
// file system's root.
type Backing struct{ Dev, Path string }

// Mount is a mount of the node.
type Mount struct {
	Path, FSType string
}

// kernelFS are the file systems through which the kernel is configured or
// inspected: a writable one in a container reaches the host.
var kernelFS = []string{"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs",
	"securityfs", "bpf", "configfs", "efivarfs", "fusectl", "pstore", "binfmt_misc", "nsfs"}

// Policy is a node's rule for host paths.
type Policy struct {
	// Allow are the operator's entries (--allow-host-path), resolved.
	Allow []string
	// NoDefaults drops the built-in list (--allow-host-path=none).
	NoDefaults bool
	// Guarded are paths refused unless an entry at or below them allows
	// them (see the package doc), resolved; GuardedPaths lists them.
	Guarded []string
	// DataDir is where the node's data dir lies on its file system, so
	// that it is guarded where another mount shows it too.
	DataDir Backing
}

// guarded are the paths guarded on every node: the kernel's, and those of
// container runtimes (a socket there runs a privileged container, a state
// dir holds other containers' root filesystems). shoal's own socket and
// state are in the data dir, which the node adds.
var guarded = []string{
	"/proc", "/sys",
	"/run/docker.sock", "/run/docker", "/var/lib/docker",
	"/run/containerd", "/var/lib/containerd",
	"/run/crio", "/var/lib/crio", "/run/containers", "/var/lib/containers",
	"/run/podman", "/run/user", "/run/k3s", "/var/lib/rancher",
	"/run/dbus", "/run/systemd", // systemd's D-Bus and private sockets start units as root
}

// GuardedPaths are the paths guarded on a node with dataDir (not yet resolved).
func GuardedPaths(dataDir string) []string {
	return append(slices.Clone(guarded), filepath.Clean(dataDir))
}

// defaults is the built-in list: where edge apps keep data, read-only
// software and time zones. /etc is handled apart (world-readable files).
var defaults = []struct {
	path     string
	readOnly bool
}{
	{"/srv", false}, {"/mnt", false}, {"/media", false},
	// Read-only: programs the host runs live here.
	{"/opt", true}, {"/usr/share/zoneinfo", true},
}

// safeDrivers are character device drivers an app may use without an
// entry: the devices distributions give to unprivileged groups (dialout,
// i2c, spi, gpio, video, audio, render). Majors 1 (mem) and 4 (tty) are
// judged by minor in safeChar.
var safeDrivers = []string{
	"ttyS", "ttyUSB", "ttyACM", "ttyAMA", "ttymxc", "ttySAC", "ttyO", "ttyTHS", "ttyGS", "ttyMSM", "ttyLP",
	"i2c", "spi", "gpiochip", "bcm2835-gpiomem",
	"video4linux", "media", "drm", "alsa", "vchiq",
}

// Refused is the error of a host path this node does not allow.
type Refused struct {
	Path, Resolved string
	// Node names the node in the message when set ("this node" otherwise).
	Node string
	// Why says what the path is; Fix what the operator can do.
	Why, Fix string
}

func (e *Refused) Error() string {
	p := e.Path
	if e.Resolved != e.Path {
		p = fmt.Sprintf("%s (resolves to %s)", e.Path, e.Resolved)
	}
	node := "this node"
	if e.Node != "" {
		node = "node " + e.Node
	}
	return fmt.Sprintf("host path %s is not allowed on %s: %s (%s)", p, node, e.Why, e.Fix)
}

// Decide reports whether t may be mounted (read-only if readOnly) under p:
// nil, or a *Refused saying why and how to allow it.
func Decide(p Policy, t Target, readOnly bool) error {
	path := t.Resolved
	refuse := func(why, fix string) error {
		return &Refused{Path: t.Path, Resolved: path, Why: why, Fix: fix}
	}
	flag := "shoal up --allow-host-path " + path
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return refuse("not a clean absolute path", "give the path itself")
	}
	// Files that are dangerous whatever their path: only an entry naming
	// the file itself allows them.
	named := slices.Contains(p.Allow, path)
	switch {
	case t.Kind == BlockDevice && !named:
		return refuse(fmt.Sprintf("it is a block device (%d:%d)", t.Major, t.Minor), flag)
	case t.Kind == CharDevice && !safeChar(t) && !named:
		return refuse(fmt.Sprintf("it is a character device of driver %s (%d:%d), not one of the safe ones", driverName(t), t.Major, t.Minor), flag)
	case t.Kind == Socket && !named:
		return refuse("it is a socket", flag)
	}
	type guard struct{ path, what string }
	var guards []guard
	for _, g := range p.Guarded {
		guards = append(guards, guard{g, g})
	}
	if t.Kind != CharDevice {
		// Device nodes are judged by their driver above; anything else of
		// /dev (a directory of disks, /dev/shm) is guarded, and so is
		// every kernel file system the node has mounted, wherever.
		guards = append(guards, guard{"/dev", "/dev"})
		for _, m := range t.KernelMounts {
			guards = append(guards, guard{m.Path, fmt.Sprintf("the kernel's %s file system at %s", m.FSType, m.Path)})
		}
	}
	for _, alias := range dataDirAliases(p.DataDir, t) {
		guards = append(guards, guard{alias, "the node's data dir, seen at " + alias})
	}
	if path == "/" {
		if !named {
			return refuse("it is the node's root", flag)
		}
		return nil
	}
	for _, g := range guards {
		var outer string // the one of path and g that holds the other
		switch {
		case under(path, g.path):
			outer = g.path
		case under(g.path, path):
			outer = path
		default:
			continue
		}
		if !slices.ContainsFunc(p.Allow, func(e string) bool { return under(path, e) && under(e, outer) }) {
			why := fmt.Sprintf("%s is guarded", g.what)
			if outer == path && g.path != path {
				why = fmt.Sprintf("it contains %s, which is guarded", g.what)
			}
			return refuse(why, flag)
		}
	}
	if slices.ContainsFunc(p.Allow, func(e string) bool { return under(path, e) }) {
		return nil
	}
	if p.NoDefaults {
		return refuse("this node allows only the host paths given to it", flag)
	}
	return byDefault(t, readOnly, flag, refuse)
}

// byDefault applies the built-in list to a path no entry allows.
func byDefault(t Target, readOnly bool, flag string, refuse func(why, fix string) error) error {
	path := t.Resolved
	if t.Kind == CharDevice {
		return nil // a safe one: Decide refused the others
	}
	roFix := "mount it with :ro, or " + flag
	for _, d := range defaults {
		if !under(path, d.path) {
			continue
		}
		switch {
		case t.Kind == File && t.Links > 1:
			return refuse(fmt.Sprintf("it is a file with %d hard links, which may be reached from elsewhere", t.Links), flag)
		case d.readOnly && !readOnly:
			return refuse(fmt.Sprintf("%s may be mounted read-only only", d.path), roFix)
		}
		return nil
	}
	if under(path, "/etc") && t.Kind == File {
		switch {
		case !t.WorldReadable:
			return refuse("it is a file of /etc that not every user of the node may read", flag)
		case t.Links > 1:
			return refuse(fmt.Sprintf("it is a file with %d hard links, which may be reached from elsewhere", t.Links), flag)
		case !readOnly:
			return refuse("files of /etc may be mounted read-only only", roFix)
		}
		return nil
	}
	return refuse("it is not in the default list (/srv, /mnt, /media; /opt, /usr/share/zoneinfo and world-readable files of /etc read-only; serial, i2c, spi, gpio, video and sound devices)", flag)
}

// safeChar reports whether a character device is one of the safe ones.
func safeChar(t Target) bool {
	switch t.Major {
	case 1: // null, zero, full, random, urandom; not mem, kmem, port, kmsg
		return slices.Contains([]uint32{3, 5, 7, 8, 9}, t.Minor)
	case 4: // serial ports; below 64 are the virtual consoles
		return t.Minor >= 64
	}
	return slices.Contains(safeDrivers, t.Driver)
}

func driverName(t Target) string {
	switch {
	case t.Major == 1:
		return "mem"
	case t.Major == 4:
		return "tty"
	case t.Driver == "":
		return "unknown"
	}
	return t.Driver
}

// under reports whether p is dir or below it; both are clean and absolute.
func under(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// dataDirAliases are the paths at which the mounts that show t, at or
// below it, show the data dir d, or a part of it (then the mount itself).
func dataDirAliases(d Backing, t Target) []string {
	var out []string
	for _, m := range t.Mounts {
		switch {
		case d.Dev == "" || m.Dev != d.Dev:
		case under(d.Path, m.Root): // the mount shows all of the data dir
			below := d.Path
			if m.Root != "/" {
				below = d.Path[len(m.Root):]
			}
			out = append(out, filepath.Join(m.Path, below))
		case under(m.Root, d.Path): // the mount shows a part of it
			out = append(out, m.Path)
		}
	}
	return out
}

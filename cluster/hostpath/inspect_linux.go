package hostpath

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/shoal-edge/shoal/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// Inspect finds what the host path p is on this node, symlinks resolved.
func Inspect(p string) (Target, error) {
	ms, err := readMounts()
	if err != nil {
		return Target{Path: p}, err
	}
	return inspect(p, ms)
}

// inspect is Inspect under the mount table ms.
func inspect(p string, ms []mountEntry) (Target, error) {
	t := Target{Path: p}
	if !filepath.IsAbs(p) {
		return t, fmt.Errorf("host path %q: not absolute", p)
	}
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return t, fmt.Errorf("host path %s: %w", p, err)
	}
	t.Resolved = filepath.Clean(r)
	// Opened without following: the resolved path has no symlink left,
	// and one that appeared since is checked as the symlink it is. The
	// kernel's name for what was opened must be the resolved path, or a
	// directory on the way was swapped for a symlink meanwhile.
	fd, err := unix.Open(t.Resolved, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return t, fmt.Errorf("host path %s: %w", t.Resolved, err)
	}
	defer unix.Close(fd)
	if at, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err != nil || at != t.Resolved {
		return t, fmt.Errorf("host path %s changed while it was checked (now %q)", t.Resolved, at)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return t, fmt.Errorf("host path %s: %w", t.Resolved, err)
	}
	t.KernelMounts = kernelMounts(t.Resolved, ms)
	t.Mounts = mountsOf(t.Resolved, ms)
	t.Links = uint64(st.Nlink)
	t.WorldReadable = st.Mode&0o004 != 0
	t.Dev, t.Ino = uint64(st.Dev), uint64(st.Ino)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		t.Kind = Dir
	case unix.S_IFREG:
		t.Kind = File
	case unix.S_IFCHR, unix.S_IFBLK:
		t.Kind = CharDevice
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			t.Kind = BlockDevice
		}
		t.Major, t.Minor = unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
		if t.Kind == CharDevice {
			t.Driver = charDriver(t.Major)
		}
	case unix.S_IFSOCK:
		t.Kind = Socket
	default:
		t.Kind = Other
	}
	return t, nil
}

// Resolve resolves the symlinks of the part of p that exists, so that an
// entry or a guarded path matches what Inspect finds (/var/run is /run)
// even when its last parts do not exist yet.
func Resolve(p string) string {
	p = filepath.Clean(p)
	rest := ""
	for dir := p; ; dir = filepath.Dir(dir) {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(r, rest)
		}
		if dir == "/" || dir == "." {
			return p
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}

// NodePolicy resolves an operator's entries (none among them drops the
// built-in list) and the guarded paths of dataDir on this node.
func NodePolicy(entries []string, dataDir string) Policy {
	var p Policy
	for _, e := range entries {
		if e == "none" {
			p.NoDefaults = true
			continue
		}
		p.Allow = append(p.Allow, Resolve(e))
	}
	// A data dir given relative (--data-dir ./d) is guarded all the same.
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	for _, g := range GuardedPaths(dataDir) {
		// Both: a guarded path may be reached by its own name or its target.
		p.Guarded = append(p.Guarded, filepath.Clean(g), Resolve(g))
	}
	return p
}

// Check inspects p and decides on it under the node's entries: the target
// to mount (Resolved, with its identity), or why not.
func Check(entries []string, dataDir, p string, readOnly bool) (Target, error) {
	// One read of the mount table for the path and the data dir alike.
	ms, err := readMounts()
	if err != nil {
		return Target{Path: p}, err
	}
	t, err := inspect(p, ms)
	if err != nil {
		return t, err
	}
	pol := NodePolicy(entries, dataDir)
	if abs, err := filepath.Abs(dataDir); err == nil {
		pol.DataDir = backing(Resolve(abs), ms)
	}
	return t, Decide(pol, t, readOnly)
}

// charDriver names the driver of a character device major from
// /proc/devices; "" when it cannot tell.
func charDriver(major uint32) string {
	f, err := os.Open("/proc/devices")
	if err != nil {
		return ""
	}
	defer f.Close()
	return parseDevices(io.LimitReader(f, 64<<10), major)
}

// parseDevices finds the name of a character device major in the text of
// /proc/devices; the first name that is not a /dev path.
func parseDevices(r io.Reader, major uint32) string {
	sc := bufio.NewScanner(r)
	inChar := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "Character devices:":
			inChar = true
			continue
		case strings.HasSuffix(line, "devices:"):
			inChar = false
			continue
		case !inChar:
			continue
		}
		num, name, ok := strings.Cut(line, " ")
		if n, err := strconv.ParseUint(num, 10, 32); ok && err == nil && uint32(n) == major && !strings.HasPrefix(name, "/") {
			return strings.TrimSpace(name)
		}
	}
	return ""
}

// mountEntry is a mount of the node with what /proc/self/mountinfo says of
// its source: the device and the directory of it that the mount shows.
type mountEntry struct {
	Mount
	dev, root string
}

// readMounts reads the node's mounts from /proc/self/mountinfo.
func readMounts() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read the node's mounts: %w", err)
	}
	defer f.Close()
	ms, err := parseMountEntries(io.LimitReader(f, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read the node's mounts: %w", err)
	}
	return ms, nil
}

// kernelMounts lists the mounts of kernel file systems at, above or below p.
func kernelMounts(p string, ms []mountEntry) []Mount {
	var out []Mount
	for _, m := range ms {
		if slices.Contains(kernelFS, m.FSType) && (under(m.Path, p) || under(p, m.Path)) {
			out = append(out, m.Mount)
		}
	}
	return out
}

// mountsOf lists the mount that shows the resolved path p (the deepest at
// or above it; the last such, which is on top) and the mounts below p.
func mountsOf(p string, ms []mountEntry) []MountSource {
	var out []MountSource
	var top *mountEntry
	for i, m := range ms {
		switch {
		case m.Path != p && under(m.Path, p):
			out = append(out, MountSource{Path: m.Path, Dev: m.dev, Root: m.root})
		case under(p, m.Path) && (top == nil || len(m.Path) >= len(top.Path)):
			top = &ms[i]
		}
	}
	if top != nil {
		out = append(out, MountSource{Path: top.Path, Dev: top.dev, Root: top.root})
	}
	return out
}

// backing is where the resolved path p lies on its file system.
func backing(p string, ms []mountEntry) Backing {
	for _, m := range mountsOf(p, ms) {
		if under(p, m.Path) {
			rest := p
			if m.Path != "/" {
				rest = p[len(m.Path):]
			}
			return Backing{Dev: m.Dev, Path: filepath.Join("/", m.Root, rest)}
		}
	}
	return Backing{}
}

// parseMountinfo reads the mount points and file system types of a
// mountinfo file.
func parseMountinfo(r io.Reader) []Mount {
	ms, _ := parseMountEntries(r)
	var out []Mount
	for _, m := range ms {
		out = append(out, m.Mount)
	}
	return out
}

// parseMountEntries reads a mountinfo file.
func parseMountEntries(r io.Reader) ([]mountEntry, error) {
	ms, err := mountinfo.Parse(r)
	out := make([]mountEntry, 0, len(ms))
	for _, m := range ms {
		out = append(out, mountEntry{Mount: Mount{Path: m.Point, FSType: m.FSType}, dev: m.Dev, root: m.Root})
	}
	return out, err
}

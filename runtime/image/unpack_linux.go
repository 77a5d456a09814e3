//go:build linux

package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	// whiteoutMeta prefixes AUFS bookkeeping entries; opaqueWhiteout is the
	// one of them that means "hide everything lower layers put here".
	whiteoutMeta   = ".wh..wh."
	opaqueWhiteout = ".wh..wh..opq"
	// maxSymlinks matches the kernel's MAXSYMLINKS: more is a loop.
	maxSymlinks = 40
)

// unpacker applies one layer to a rootfs directory.
//
// Every path is resolved by the unpacker itself, one component at a time,
// following symlinks relative to the rootfs (as a process chrooted there
// would) and never through the host's /. The resolved path therefore holds
// no symlink, and the final component is created with O_EXCL|O_NOFOLLOW
// after removing what was there, so nothing is ever written through a link.
// This is safe without openat2 because nothing but the unpacker changes the
// directory while it works: it is a fresh directory under the store's tmp/.
type unpacker struct {
	root  string
	layer string
	log   *slog.Logger
	chown bool
	// written holds the root-relative paths this layer created or replaced,
	// and their parents; whiteouts only hide what lower layers wrote.
	written  map[string]bool
	dirTimes []dirTime
	// budget counts the files of the whole image against its limit.
	budget *budget
	buf    []byte // copy buffer for file contents
}

type dirTime struct {
	path         string
	atime, mtime time.Time
}

// applyLayer unpacks the tar stream r (the layer named layer, for errors)
// on top of the directory root, counting its files against b.
func applyLayer(ctx context.Context, root, layer string, r io.Reader, b *budget, log *slog.Logger) error {
	abs, err := filepath.Abs(root)
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", layer, err)
	}
	u := &unpacker{root: abs, layer: layer, log: log, chown: os.Geteuid() == 0, written: map[string]bool{},
		budget: b, buf: make([]byte, 64<<10)}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("unpack layer %s: %w", layer, err)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("unpack layer %s: read tar: %w", layer, err)
		}
		if err := u.entry(ctx, hdr, tr); err != nil {
			return fmt.Errorf("unpack layer %s: entry %q: %w", layer, hdr.Name, err)
		}
	}
	// Directory times last: creating their children changed them.
	for i := len(u.dirTimes) - 1; i >= 0; i-- {
		d := u.dirTimes[i]
		u.setTimes(d.path, d.atime, d.mtime)
	}
	return nil
}

// entryPath turns a tar entry name into a clean path relative to the
// rootfs. Absolute names are taken relative to the rootfs; names that climb
// above it are refused.
func entryPath(name string) (string, error) {
	n := strings.TrimLeft(name, "/")
	if n == "" {
		return ".", nil
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: %q climbs out of the rootfs", ErrUnsafeLayer, name)
	}
	return c, nil
}

func (u *unpacker) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	rel, err := entryPath(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := path.Dir(rel), path.Base(rel)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(dir, base)
	}
	target := ""
	if rel != "." {
		parent, err := u.resolve(dir, true)
		if err != nil {
			return err
		}
		target = path.Join(parent, base)
	} else if hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("%w: the rootfs itself as a non-directory", ErrUnsafeLayer)
	}
	host := filepath.Join(u.root, target)

	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := u.replace(host, true); err != nil {
			return err
		}
		if err := os.Mkdir(host, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		u.mark(target)
		if err := u.setOwnerMode(host, hdr); err != nil {
			return err
		}
		u.dirTimes = append(u.dirTimes, dirTime{host, hdr.AccessTime, hdr.ModTime})
		return nil
	case tar.TypeReg, tar.TypeGNUSparse:
		// Counted before a byte is written: the tar reader yields exactly
		// hdr.Size bytes, so the header tells what the file will take.
		if err := u.budget.take(hdr.Name, hdr.Size); err != nil {
			return err
		}
		if err := u.replace(host, false); err != nil {
			return err
		}
		u.mark(target)
		f, err := os.OpenFile(host, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		err = writeSparse(f, ctxReader{ctx, r}, hdr.Size, u.buf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := u.replace(host, false); err != nil {
			return err
		}
		u.mark(target)
		// The link text is stored as is: it is only ever followed inside
		// the container, or by resolve, relative to the rootfs.
		if err := os.Symlink(hdr.Linkname, host); err != nil {
			return err
		}
		if u.chown {
			if err := unix.Lchown(host, hdr.Uid, hdr.Gid); err != nil {
				return fmt.Errorf("lchown: %w", err)
			}
		}
		u.setTimes(host, hdr.AccessTime, hdr.ModTime)
		return nil
	case tar.TypeLink:
		return u.hardlink(host, target, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		// A container gets its devices from the runtime, never from an image.
		u.log.Debug("unpack: skipping device node or fifo", "layer", u.layer, "entry", hdr.Name)
		return nil
	default:
		u.log.Debug("unpack: skipping entry of unsupported type", "layer", u.layer, "entry", hdr.Name, "type", string(hdr.Typeflag))
		return nil
	}
	if err := u.setOwnerMode(host, hdr); err != nil {
		return err
	}
	u.setTimes(host, hdr.AccessTime, hdr.ModTime)
	return nil
}

// sparseBlock is the unit of zeros left as a hole: a filesystem block.
const sparseBlock = 4096

// writeSparse writes the size bytes of r to f, leaving every block-aligned
// run of zeros as a hole. Go's tar reader turns the holes of a sparse entry
// into zeros, so this keeps a sparse file sparse (and makes holes of any
// zero blocks a plain entry carries); buf's length is a multiple of
// sparseBlock.
func writeSparse(f *os.File, r io.Reader, size int64, buf []byte) error {
	var off int64
	for off < size {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-off)])
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		// Write each run of blocks that hold data; skip the others.
		start := -1
		for i := 0; i < n; i += sparseBlock {
			end := min(i+sparseBlock, n)
			data := !allZero(buf[i:end])
			if data && start < 0 {
				start = i
			}
			if start >= 0 && (!data || end == n) {
				if !data {
					end = i
				}
				if _, err := f.WriteAt(buf[start:end], off+int64(start)); err != nil {
					return err
				}
				start = -1
			}
		}
		off += int64(n)
	}
	// A file that ends in a hole gets its length here.
	return f.Truncate(size)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// resolve returns the path, relative to the rootfs and free of symlinks,
// that rel names inside it. Symlinks are followed relative to the rootfs and
// ".." stops at its top, as in a chroot. With create, missing directories
// are made (mode 0755); without, a missing one is an fs.ErrNotExist error.
func (u *unpacker) resolve(rel string, create bool) (string, error) {
	parts := strings.Split(rel, "/")
	cur := ""
	links := 0
	for len(parts) > 0 {
		p := parts[0]
		parts = parts[1:]
		switch p {
		case "", ".":
			continue
		case "..":
			cur = parentOf(cur)
			continue
		}
		next := path.Join(cur, p)
		host := filepath.Join(u.root, next)
		fi, err := os.Lstat(host)
		switch {
		case errors.Is(err, fs.ErrNotExist) && create:
			if err := os.Mkdir(host, 0o755); err != nil {
				return "", err
			}
			u.mark(next)
			cur = next
		case err != nil:
			return "", err
		case fi.Mode()&fs.ModeSymlink != 0:
			if links++; links > maxSymlinks {
				return "", fmt.Errorf("resolve %s: %w", rel, syscall.ELOOP)
			}
			link, err := os.Readlink(host)
			if err != nil {
				return "", err
			}
			if path.IsAbs(link) {
				cur = ""
			}
			parts = append(strings.Split(link, "/"), parts...)
		case fi.IsDir():
			cur = next
		default:
			return "", fmt.Errorf("resolve %s: %s: %w", rel, next, syscall.ENOTDIR)
		}
	}
	return cur, nil
}

func parentOf(rel string) string {
	if d := path.Dir(rel); d != "." {
		return d
	}
	return ""
}

// mark records rel and its parents as written by this layer.
func (u *unpacker) mark(rel string) {
	for p := rel; p != "" && !u.written[p]; p = parentOf(p) {
		u.written[p] = true
	}
}

// replace removes whatever is at host so a new entry can take its place;
// an existing directory is kept when keepDir (directories merge).
func (u *unpacker) replace(host string, keepDir bool) error {
	fi, err := os.Lstat(host)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir() && keepDir:
		return nil
	}
	return os.RemoveAll(host)
}

func (u *unpacker) whiteout(dir, base string) error {
	if base != opaqueWhiteout && strings.HasPrefix(base, whiteoutMeta) {
		u.log.Debug("unpack: skipping AUFS metadata", "layer", u.layer, "entry", path.Join(dir, base))
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: whiteout of %q", ErrUnsafeLayer, name)
	}
	parent, err := u.resolve(dir, false)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil // nothing below to hide
	}
	if err != nil {
		return err
	}
	if base == opaqueWhiteout {
		return u.removeLower(parent)
	}
	rel := path.Join(parent, name)
	if u.written[rel] {
		return nil // a layer's whiteouts hide only lower layers' files
	}
	return os.RemoveAll(filepath.Join(u.root, rel))
}

// removeLower empties dir of everything lower layers put there, keeping what
// this layer wrote.
func (u *unpacker) removeLower(dir string) error {
	ents, err := os.ReadDir(filepath.Join(u.root, dir))
	if err != nil {
		return err
	}
	for _, e := range ents {
		rel := path.Join(dir, e.Name())
		switch {
		case !u.written[rel]:
			if err := os.RemoveAll(filepath.Join(u.root, rel)); err != nil {
				return err
			}
		case e.IsDir():
			if err := u.removeLower(rel); err != nil {
				return err
			}
		}
	}
	return nil
}

// hardlink links host to the rootfs file linkname names. The target must be
// inside the rootfs and a regular file: linking a symlink would give an inode
// whose meaning depends on where it is resolved from.
func (u *unpacker) hardlink(host, target, linkname string) error {
	lrel, err := entryPath(linkname)
	if err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}
	if lrel == "." {
		return fmt.Errorf("hardlink to the rootfs itself")
	}
	lparent, err := u.resolve(path.Dir(lrel), false)
	if err != nil {
		return fmt.Errorf("hardlink target %s: %w", linkname, err)
	}
	src := filepath.Join(u.root, lparent, path.Base(lrel))
	fi, err := os.Lstat(src)
	switch {
	case err != nil:
		return fmt.Errorf("hardlink target %s: %w", linkname, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: hardlink to symlink %s", ErrUnsafeLayer, linkname)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("hardlink target %s: not a regular file", linkname)
	case src == host:
		return nil
	}
	if err := u.replace(host, false); err != nil {
		return err
	}
	u.mark(target)
	return os.Link(src, host)
}

// setOwnerMode applies ownership and permissions, without setuid and setgid:
// the node does not run image-provided privilege escalation.
func (u *unpacker) setOwnerMode(host string, hdr *tar.Header) error {
	if u.chown {
		if err := unix.Lchown(host, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("lchown: %w", err)
		}
	}
	if err := unix.Chmod(host, uint32(hdr.Mode)&0o1777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

// setTimes preserves mtime (and atime) where the kernel accepts them; an
// image's timestamps are cosmetic, so failure is only logged.
func (u *unpacker) setTimes(host string, atime, mtime time.Time) {
	if mtime.IsZero() {
		return
	}
	if atime.IsZero() {
		atime = mtime
	}
	a, err1 := unix.TimeToTimespec(atime)
	m, err2 := unix.TimeToTimespec(mtime)
	if err := errors.Join(err1, err2); err != nil {
		return
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, host, []unix.Timespec{a, m}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		u.log.Debug("unpack: cannot set times", "layer", u.layer, "path", host, "err", err)
	}
}

// syncFS flushes the filesystem holding dir, so a rootfs renamed into place
// after it is complete on disk too.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

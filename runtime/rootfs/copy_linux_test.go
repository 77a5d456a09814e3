package rootfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-edge/shoal/internal/testutil"
	"golang.org/x/sys/unix"
)

// entry is what a copy must keep of one file.
type entry struct {
	Mode     uint32
	UID, GID uint32
	Mtime    int64
	Link     string // symlink target
	Data     string
	Xattrs   map[string]string
	Group    string // the first name sharing this inode: hardlinks
}

// snapshot describes the tree at root without following symlinks.
func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		e := entry{Mode: st.Mode, UID: st.Uid, GID: st.Gid, Mtime: st.Mtim.Nano()}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			e.Link, _ = os.Readlink(path)
		case unix.S_IFREG:
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			e.Data = string(b)
			if first, ok := inodes[st.Ino]; ok {
				e.Group = first
			} else {
				inodes[st.Ino] = rel
				e.Group = rel
			}
		}
		names, err := listXattrs(path)
		if err != nil && !xattrUnsupported(err) {
			return err
		}
		for _, n := range names {
			v, err := getXattr(path, n)
			if err != nil {
				return err
			}
			if e.Xattrs == nil {
				e.Xattrs = map[string]string{}
			}
			e.Xattrs[n] = string(v)
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// buildImage makes an image rootfs with what a copy gets wrong easily.
func buildImage(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
	for _, d := range []string{"etc", "bin", "home/user", "empty"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(os.WriteFile(dir+"/etc/hostname", []byte("image\n"), 0o644))
	must(os.WriteFile(dir+"/bin/su", []byte("#!setuid\n"), 0o755))
	must(unix.Chmod(dir+"/bin/su", 0o4755))
	must(os.WriteFile(dir+"/bin/busybox", []byte("multi-call"), 0o755))
	must(os.Link(dir+"/bin/busybox", dir+"/bin/sh"))
	must(os.Link(dir+"/bin/busybox", dir+"/etc/ls"))
	must(os.WriteFile(dir+"/bin/ping", []byte("ping"), 0o755))
	// A file capability: chown would clear it, so it tests the order.
	capData := make([]byte, 20)
	binary.LittleEndian.PutUint32(capData[0:], 0x02000000) // VFS_CAP_REVISION_2
	binary.LittleEndian.PutUint32(capData[4:], 1<<unix.CAP_NET_RAW)
	must(unix.Setxattr(dir+"/bin/ping", "security.capability", capData, 0))
	must(unix.Setxattr(dir+"/etc/hostname", "user.origin", []byte("test"), 0))
	// Symlinks out of the image: copied as text, never followed.
	must(os.Symlink("/etc/shadow", dir+"/etc/abs"))
	must(os.Symlink("../../../../outside", dir+"/etc/rel"))
	must(os.Symlink("busybox", dir+"/bin/ls"))
	must(os.Symlink("/nonexistent/dangling", dir+"/dangling"))
	must(unix.Mkfifo(dir+"/home/fifo", 0o640))
	must(os.WriteFile(dir+"/home/user/.profile", []byte("export A=1\n"), 0o600))
	must(os.Lchown(dir+"/home/user/.profile", 1000, 1001))
	must(os.Lchown(dir+"/home/user", 1000, 1001))
	must(os.Lchown(dir+"/etc/rel", 7, 8))
	must(os.Chmod(dir+"/home/user", 0o750))
	must(os.Chmod(dir+"/empty", 0o1777))
	must(os.Chmod(dir, 0o751))
	// Times last, deepest first: each write changed its dir's mtime.
	for _, p := range []string{"etc/rel", "bin/su", "home/user/.profile", "home/user", "home", "empty", "etc", "bin", "."} {
		ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano()), unix.NsecToTimespec(old.UnixNano())}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, p), ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

func TestCopyForced(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	base := t.TempDir()
	image, dir := base+"/image", base+"/c1"
	if err := os.Mkdir(image, 0o755); err != nil {
		t.Fatal(err)
	}
	buildImage(t, image)
	want := snapshot(t, image)
	var logs bytes.Buffer
	merged, err := MountWith(image, dir, Options{NoOverlay: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if merged != dir+"/merged" {
		t.Errorf("merged = %q", merged)
	}
	if m := mounted(t, dir); len(m) != 0 {
		t.Errorf("forced copy mounted %v", m)
	}
	if ok, err := IsCopy(dir); !ok || err != nil {
		t.Errorf("IsCopy = %v, %v", ok, err)
	}
	if diff := cmp.Diff(want, snapshot(t, merged)); diff != "" {
		t.Errorf("copy differs from the image (-image +copy):\n%s", diff)
	}
	if _, err := os.Stat(dir + "/upper"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("copy made an upper dir: %v", err)
	}
	// One Info line, with the size.
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "level=INFO") ||
		!strings.Contains(logs.String(), "bytes=") {
		t.Errorf("logs = %q, want one Info line with bytes=", logs.String())
	}

	// Hardlinks are links within the copy, not into the image.
	var img, sh, bb unix.Stat_t
	for p, st := range map[string]*unix.Stat_t{image + "/bin/sh": &img, merged + "/bin/sh": &sh, merged + "/bin/busybox": &bb} {
		if err := unix.Lstat(p, st); err != nil {
			t.Fatal(err)
		}
	}
	if sh.Ino != bb.Ino || sh.Ino == img.Ino || sh.Nlink != 3 {
		t.Errorf("hardlinks: sh ino %d nlink %d, busybox ino %d, image ino %d", sh.Ino, sh.Nlink, bb.Ino, img.Ino)
	}
	// Writes, through a hardlink and a plain file, stay in the copy.
	if err := os.WriteFile(merged+"/bin/sh", []byte("changed"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(merged+"/etc/hostname", []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(merged + "/bin/su"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(merged + "/etc/ls"); string(b) != "changed" {
		t.Errorf("write through one hardlink not seen by another: %q", b)
	}
	if diff := cmp.Diff(want, snapshot(t, image)); diff != "" {
		t.Errorf("writes in the copy changed the image (-before +after):\n%s", diff)
	}

	if err := Unmount(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir left behind: %v", err)
	}
	if err := Unmount(dir); err != nil {
		t.Errorf("second Unmount: %v", err)
	}
	if diff := cmp.Diff(want, snapshot(t, image)); diff != "" {
		t.Errorf("Unmount changed the image (-before +after):\n%s", diff)
	}
}

// TestCopyWhenOverlayRefused puts dir on an overlay, which overlayfs refuses
// as an upper (EINVAL): the kernel, not a fake, makes Mount fall back.
func TestCopyWhenOverlayRefused(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	base := t.TempDir()
	image := base + "/image"
	for _, d := range []string{image + "/etc", base + "/l", base + "/u", base + "/w", base + "/ov"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(image+"/etc/hostname", []byte("image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("overlay", base+"/ov", "overlay", 0, "lowerdir="+base+"/l,upperdir="+base+"/u,workdir="+base+"/w"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(base+"/ov", unix.MNT_DETACH) })
	dir := base + "/ov/c1"
	var logs bytes.Buffer
	merged, err := MountWith(image, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := IsCopy(dir); !ok {
		t.Fatalf("IsCopy = false; mounts under dir: %v", mounted(t, dir))
	}
	if b, err := os.ReadFile(merged + "/etc/hostname"); err != nil || string(b) != "image\n" {
		t.Errorf("copied file = %q, %v", b, err)
	}
	if !strings.Contains(logs.String(), "invalid argument") {
		t.Errorf("log does not say why: %q", logs.String())
	}
	for _, d := range []string{"upper", "work"} {
		if _, err := os.Stat(dir + "/" + d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after the fallback: %v", d, err)
		}
	}
	if err := Unmount(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir left behind: %v", err)
	}
}

func TestOverlayMountFailure(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	base := t.TempDir()
	image := base + "/image"
	if err := os.MkdirAll(image+"/bin", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		err      error
		wantCopy bool
	}{
		{unix.ENODEV, true}, // no overlayfs in the kernel
		{unix.EINVAL, true},
		{unix.EOPNOTSUPP, true},
		{unix.EPERM, false}, // not a missing feature: an error
		{unix.ENOSPC, false},
	} {
		dir := filepath.Join(base, "c-"+unix.ErrnoName(tt.err.(unix.Errno)))
		calls := 0
		fail := func(string, string, string, uintptr, string) error { calls++; return tt.err }
		_, err := MountWith(image, dir, Options{mount: fail})
		if calls != 1 {
			t.Errorf("%v: mount called %d times", tt.err, calls)
		}
		if !tt.wantCopy {
			if !errors.Is(err, tt.err) {
				t.Errorf("%v: err = %v", tt.err, err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%v: failed Mount left %s: %v", tt.err, dir, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: no fallback: %v", tt.err, err)
			continue
		}
		if fi, err := os.Stat(dir + "/merged/bin"); err != nil || !fi.IsDir() {
			t.Errorf("%v: copy lacks bin: %v", tt.err, err)
		}
		if ok, _ := IsCopy(dir); !ok {
			t.Errorf("%v: no copy marker", tt.err)
		}
		if err := Unmount(dir); err != nil {
			t.Error(err)
		}
	}
}

// TestUnmountHalfCopy is what a crash during the copy, then a container
// that mounted things, leaves: Unmount must unmount first and never delete
// through a live mount.
func TestUnmountHalfCopy(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	base := t.TempDir()
	image, dir := base+"/image", base+"/c1"
	if err := os.MkdirAll(image+"/etc", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(image+"/etc/hostname", []byte("image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	merged := dir + "/merged"
	for _, d := range []string{merged + "/etc", merged + "/ro/sub", merged + "/proc", merged + "/img"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(dir+"/"+copyMarker, []byte("forced\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(merged+"/ro/sub/f", nil, 0o400); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{merged + "/ro/sub", merged + "/ro"} {
		if err := os.Chmod(d, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("tmpfs", merged+"/proc", "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	// A live view of the image below dir: deleting through it would
	// delete the image.
	if err := unix.Mount(image, merged+"/img", "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := Unmount(dir); err != nil {
		t.Fatal(err)
	}
	if m := mounted(t, dir); len(m) != 0 {
		t.Errorf("still mounted: %v", m)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir left behind: %v", err)
	}
	if b, err := os.ReadFile(image + "/etc/hostname"); err != nil || string(b) != "image\n" {
		t.Errorf("Unmount deleted through a mount into the image: %q, %v", b, err)
	}
}

func TestMountRefusals(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	base := t.TempDir()
	image := base + "/image"
	if err := os.MkdirAll(image+"/etc", 0o755); err != nil {
		t.Fatal(err)
	}
	// dir inside the image: the copy would copy itself, and dir would
	// write the image.
	for _, o := range []Options{{NoOverlay: true}, {}} {
		if _, err := MountWith(image, image+"/c", o); err == nil || !strings.Contains(err.Error(), "overlap") {
			t.Errorf("%+v: dir inside the image: err = %v", o, err)
		}
		if _, err := os.Stat(image + "/c"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%+v: Mount wrote the image: %v", o, err)
		}
	}
	if _, err := MountWith(image+"/etc", base, Options{NoOverlay: true}); err == nil {
		t.Error("Mount accepted the image inside dir")
	}
	// A dir in use is refused and left alone.
	dir := base + "/busy"
	if err := os.MkdirAll(dir+"/merged", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := MountWith(image, dir, Options{NoOverlay: true}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty dir: err = %v", err)
	}
	if _, err := os.Stat(dir + "/merged"); err != nil {
		t.Errorf("failed Mount removed what was there: %v", err)
	}
	// An empty dir is fine.
	empty := base + "/empty"
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := MountWith(image, empty, Options{NoOverlay: true}); err != nil {
		t.Errorf("empty dir: %v", err)
	}
	if err := Unmount(empty); err != nil {
		t.Error(err)
	}
}

func TestListXattrs(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	f := t.TempDir() + "/f"
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"user.b", "user.a"} {
		if err := unix.Setxattr(f, n, []byte(n), 0); err != nil {
			t.Skipf("no user xattrs here: %v", err)
		}
	}
	names, err := listXattrs(f)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	if diff := cmp.Diff([]string{"user.a", "user.b"}, names); diff != "" {
		t.Errorf("listXattrs (-want +got):\n%s", diff)
	}
}

package hostpath

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Check looks at the real file: symlinks resolved, device types from stat,
// hard links counted.
func TestCheckOnNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mknod needs root")
	}
	allowed, dataDir := t.TempDir(), t.TempDir()
	mk := func(name string, mode uint32, dev int) string {
		p := filepath.Join(allowed, name)
		if err := unix.Mknod(p, mode|0o600, dev); err != nil {
			t.Fatal(err)
		}
		return p
	}
	disk := mk("disk", unix.S_IFBLK, int(unix.Mkdev(7, 0)))
	mem := mk("mem", unix.S_IFCHR, int(unix.Mkdev(1, 1)))
	null := mk("null", unix.S_IFCHR, int(unix.Mkdev(1, 3)))
	for name, to := range map[string]string{"proc": "/proc", "data": dataDir, "up": ".."} {
		if err := os.Symlink(to, filepath.Join(allowed, name)); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(allowed, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	entries := []string{allowed}
	for p, want := range map[string]string{
		disk:                              "is a block device (7:0)",
		mem:                               "driver mem (1:1)",
		null:                              "",
		file:                              "",
		filepath.Join(allowed, "proc"):    "(resolves to /proc) is not allowed on this node: /proc is guarded",
		filepath.Join(allowed, "data"):    "is guarded",
		filepath.Join(allowed, "up"):      "which is guarded", // it holds the data dir
		filepath.Join(allowed, "missing"): "no such file or directory",
	} {
		tgt, err := Check(entries, dataDir, p, false)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", p, err, want)
		}
		if err == nil && tgt.Ino == 0 {
			t.Errorf("%s: no identity: %+v", p, tgt)
		}
	}
	// Hard links are counted.
	if err := os.Link(file, filepath.Join(allowed, "file2")); err != nil {
		t.Fatal(err)
	}
	tgt, err := Inspect(file)
	if err != nil || tgt.Links != 2 || tgt.Kind != File {
		t.Fatalf("Inspect %s: %+v, %v", file, tgt, err)
	}
}

// A bind of a directory brings the mounts below it: one holding a proc
// mount needs an entry naming it.
func TestCheckKernelMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mount needs root")
	}
	parent := t.TempDir()
	proc := filepath.Join(parent, "app", "chroot", "proc")
	if err := os.MkdirAll(proc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(proc, unix.MNT_DETACH) })
	app := filepath.Join(parent, "app")
	for _, tc := range []struct {
		entries []string
		path    string
		want    string
	}{
		{[]string{parent}, app, "it contains the kernel's proc file system at " + proc + ", which is guarded"},
		{[]string{parent}, filepath.Join(proc, "sys"), "the kernel's proc file system at " + proc + " is guarded"},
		{[]string{app}, app, ""},
	} {
		_, err := Check(tc.entries, t.TempDir(), tc.path, false)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s under %v: %v, want %q", tc.path, tc.entries, err, tc.want)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	const text = `21 26 0:20 / /proc rw,relatime - proc proc rw
26 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
90 26 0:50 / /mnt/with\040space rw - sysfs sysfs rw
bad line
`
	got := parseMountinfo(strings.NewReader(text))
	want := []Mount{{"/proc", "proc"}, {"/", "ext4"}, {"/mnt/with space", "sysfs"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mount %d: %v, want %v", i, got[i], want[i])
		}
	}
}

// A data dir given relative to the daemon's working directory is guarded.
func TestRelativeDataDir(t *testing.T) {
	cwd := t.TempDir()
	t.Chdir(cwd)
	if err := os.Mkdir("data", 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(cwd, "data")
	if _, err := Check([]string{cwd}, "data", data, false); err == nil || !strings.Contains(err.Error(), data+" is guarded") {
		t.Fatalf("bind of the data dir given as ./data: %v", err)
	}
}

// The check runs at every start of a container with a host path.
func BenchmarkCheck(b *testing.B) {
	dir, data := b.TempDir(), b.TempDir()
	for b.Loop() {
		if _, err := Check([]string{dir}, data, dir, false); err != nil {
			b.Fatal(err)
		}
	}
}

// The data dir bound elsewhere (a data disk mounted under /mnt and bound
// to /var/lib/shoal) is the data dir at that path too: guarded there, and
// so is a directory that holds it or lies in it.
func TestCheckDataDirBoundElsewhere(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mount needs root")
	}
	disk, allowed := t.TempDir(), t.TempDir()
	dataDir := filepath.Join(disk, "shoal")
	for _, d := range []string{filepath.Join(dataDir, "tls"), filepath.Join(disk, "photos")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bind := func(src, name string) string {
		dst := filepath.Join(allowed, name)
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(dst, unix.MNT_DETACH) })
		return dst
	}
	usb := bind(disk, "usb")
	tls := bind(filepath.Join(dataDir, "tls"), "tls")
	for p, want := range map[string]string{
		usb:                             "it contains the node's data dir, seen at " + filepath.Join(usb, "shoal") + ", which is guarded",
		filepath.Join(usb, "shoal"):     "the node's data dir, seen at " + filepath.Join(usb, "shoal") + " is guarded",
		filepath.Join(usb, "shoal/tls"): "the node's data dir, seen at " + filepath.Join(usb, "shoal") + " is guarded",
		tls:                             "the node's data dir, seen at " + tls + " is guarded",
		filepath.Join(usb, "photos"):    "",
		filepath.Join(disk, "photos"):   "",
	} {
		_, err := Check([]string{allowed, disk}, dataDir, p, false)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", p, err, want)
		}
	}
}

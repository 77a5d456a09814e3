package hostpath

import (
	"errors"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	dir := func(p string) Target { return Target{Path: p, Resolved: p, Kind: Dir} }
	file := func(p string) Target { return Target{Path: p, Resolved: p, Kind: File, Links: 1, WorldReadable: true} }
	chr := func(p string, major, minor uint32, driver string) Target {
		return Target{Path: p, Resolved: p, Kind: CharDevice, Major: major, Minor: minor, Driver: driver}
	}
	blk := Target{Path: "/dev/loop0", Resolved: "/dev/loop0", Kind: BlockDevice, Major: 7}
	link := func(from string, to Target) Target { to.Path = from; return to }
	node := func(entries ...string) Policy {
		p := Policy{Guarded: GuardedPaths("/var/lib/shoal")}
		for _, e := range entries {
			if e == "none" {
				p.NoDefaults = true
			} else {
				p.Allow = append(p.Allow, e)
			}
		}
		return p
	}
	secret := file("/etc/shadow")
	secret.WorldReadable = false
	hardlinked := file("/srv/app/passwd")
	hardlinked.Links = 2
	sock := Target{Path: "/srv/app/api.sock", Resolved: "/srv/app/api.sock", Kind: Socket}

	for _, tc := range []struct {
		name   string
		policy Policy
		target Target
		ro     bool
		want   string // "" allowed, else a part of the error
	}{
		// The built-in list: what edge apps use out of the box.
		{"data under /srv", node(), dir("/srv/app"), false, ""},
		{"/mnt", node(), dir("/mnt/usb"), false, ""},
		{"/media itself", node(), dir("/media"), false, ""},
		{"/opt read-only", node(), dir("/opt/vendor"), true, ""},
		{"/opt writable", node(), dir("/opt/vendor"), false, "/opt may be mounted read-only only (mount it with :ro"},
		{"a config file of /etc read-only", node(), file("/etc/site.conf"), true, ""},
		{"a config file of /etc writable", node(), file("/etc/site.conf"), false, "files of /etc may be mounted read-only only"},
		{"/etc/localtime resolved", node(), link("/etc/localtime", file("/usr/share/zoneinfo/Europe/Berlin")), true, ""},
		{"a secret of /etc", node(), secret, true, "not every user of the node may read"},
		{"/etc itself", node(), dir("/etc"), true, "not in the default list"},
		{"serial port", node(), chr("/dev/ttyUSB0", 188, 0, "ttyUSB"), false, ""},
		{"ACM modem", node(), chr("/dev/ttyACM1", 166, 1, "ttyACM"), false, ""},
		{"on-board serial", node(), chr("/dev/ttyS0", 4, 64, "ttyS"), false, ""},
		{"serial by id", node(), link("/dev/serial/by-id/usb-FTDI", chr("/dev/ttyUSB0", 188, 0, "ttyUSB")), false, ""},
		{"gpio", node(), chr("/dev/gpiochip0", 254, 0, "gpiochip"), false, ""},
		{"i2c", node(), chr("/dev/i2c-1", 89, 1, "i2c"), false, ""},
		{"spi", node(), chr("/dev/spidev0.0", 153, 0, "spi"), false, ""},
		{"camera", node(), chr("/dev/video0", 81, 0, "video4linux"), false, ""},
		{"null", node(), chr("/dev/null", 1, 3, "mem"), false, ""},
		// Refused: the host's root and kernel interfaces.
		{"/", node(), dir("/"), true, "host path / is not allowed on this node: it is the node's root (shoal up --allow-host-path /)"},
		{"/proc", node(), dir("/proc"), true, "host path /proc is not allowed on this node: /proc is guarded (shoal up --allow-host-path /proc)"},
		{"core_pattern", node(), file("/proc/sys/kernel/core_pattern"), true, "/proc is guarded"},
		{"/sys", node(), dir("/sys/class/gpio"), false, "/sys is guarded"},
		{"/dev", node(), dir("/dev"), false, "/dev is guarded"},
		{"/dev/shm", node(), dir("/dev/shm"), false, "/dev is guarded"},
		{"/dev/mem", node(), chr("/dev/mem", 1, 1, "mem"), false, "character device of driver mem (1:1)"},
		{"/dev/kmem", node(), chr("/dev/kmem", 1, 2, "mem"), false, "driver mem (1:2)"},
		{"/dev/port", node(), chr("/dev/port", 1, 4, "mem"), false, "driver mem (1:4)"},
		{"/dev/kmsg", node(), chr("/dev/kmsg", 1, 11, "mem"), false, "driver mem (1:11)"},
		{"a console", node(), chr("/dev/tty1", 4, 1, "tty"), false, "driver tty (4:1)"},
		{"fuse, kvm, uinput", node(), chr("/dev/uinput", 10, 223, "misc"), false, "driver misc (10:223)"},
		{"keyboard", node(), chr("/dev/input/event0", 13, 64, "input"), false, "driver input"},
		{"block device", node(), blk, true, "it is a block device (7:0) (shoal up --allow-host-path /dev/loop0)"},
		{"a disk made in /srv", node(), Target{Path: "/srv/disk", Resolved: "/srv/disk", Kind: BlockDevice, Major: 8}, false, "block device"},
		{"/dev/mem made in /srv", node(), chr("/srv/mem", 1, 1, "mem"), false, "driver mem"},
		// Refused: places that are a root shell when writable.
		{"/etc writable", node(), dir("/etc"), false, "not in the default list"},
		{"/root", node(), dir("/root/.ssh"), false, "not in the default list"},
		{"/boot", node(), dir("/boot"), false, "not in the default list"},
		{"/usr", node(), dir("/usr/bin"), false, "not in the default list"},
		{"/var/lib", node(), dir("/var/lib"), false, "contains /var/lib/docker"},
		{"/run", node(), dir("/run"), false, "contains /run/docker.sock"},
		{"/home", node(), dir("/home/pi"), false, "not in the default list"},
		{"/tmp", node(), dir("/tmp/x"), false, "not in the default list"},
		{"the data dir", node(), dir("/var/lib/shoal"), false, "/var/lib/shoal is guarded"},
		{"shoal's socket", node(), Target{Path: "/var/lib/shoal/shoal.sock", Resolved: "/var/lib/shoal/shoal.sock", Kind: Socket}, false, "it is a socket"},
		{"docker's socket", node("/run"), Target{Path: "/var/run/docker.sock", Resolved: "/run/docker.sock", Kind: Socket}, false, "it is a socket"},
		{"containerd's state", node("/run"), dir("/run/containerd"), false, "/run/containerd is guarded"},
		{"a symlink out of /srv", node(), link("/srv/app/x", dir("/etc")), false, "host path /srv/app/x (resolves to /etc) is not allowed"},
		{"a symlink to /proc", node(), link("/srv/app/p", dir("/proc")), true, "/proc is guarded"},
		{"a path with ..", node(), Target{Path: "/srv/../etc", Resolved: "/srv/../etc", Kind: Dir}, false, "not a clean absolute path"},
		{"a hard link in /srv", node(), hardlinked, true, "with 2 hard links"},
		{"a socket in /srv", node(), sock, false, "it is a socket"},
		// An entry of the operator.
		{"entry", node("/data"), dir("/data/app"), false, ""},
		{"entry allows hard links", node("/data"), func() Target { t := hardlinked; t.Path, t.Resolved = "/data/f", "/data/f"; return t }(), false, ""},
		{"entry allows writable /opt", node("/opt/vendor/data"), dir("/opt/vendor/data"), false, ""},
		{"entry does not reach its parent", node("/data/app"), dir("/data"), false, "not in the default list"},
		{"/ does not allow /proc", node("/"), dir("/proc"), false, "/proc is guarded"},
		{"/ does not allow the data dir", node("/"), dir("/var/lib/shoal/volumes"), false, "/var/lib/shoal is guarded"},
		{"/ allows /etc", node("/"), dir("/etc"), false, ""},
		{"/ allows binding / itself", node("/"), dir("/"), false, ""},
		{"/var does not allow /var/lib", node("/var"), dir("/var/lib"), false, "contains /var/lib/docker"},
		{"/var/lib named", node("/var/lib"), dir("/var/lib"), false, ""},
		{"/srv beside the data dir", node(), dir("/srv"), false, ""},
		{"/proc named", node("/proc"), dir("/proc"), false, ""},
		{"below /proc named", node("/proc/sys/kernel/hostname"), file("/proc/sys/kernel/hostname"), true, ""},
		{"/dev does not name a disk", node("/dev"), blk, false, "block device"},
		{"a named disk", node("/dev/loop0"), blk, false, ""},
		{"named /dev/mem", node("/dev/mem"), chr("/dev/mem", 1, 1, "mem"), false, ""},
		{"named socket", node("/srv/app/api.sock"), sock, false, ""},
		{"/dev/bus/usb named", node("/dev/bus/usb"), dir("/dev/bus/usb"), false, ""},
		// Kernel file systems mounted elsewhere.
		{"a proc mount under /mnt", node(), withMounts(dir("/mnt"), Mount{"/mnt/chroot/proc", "proc"}), false, "it contains the kernel's proc file system at /mnt/chroot/proc, which is guarded"},
		{"a proc mount under /mnt, /mnt named", node("/mnt"), withMounts(dir("/mnt"), Mount{"/mnt/chroot/proc", "proc"}), false, ""},
		{"in a proc mount under /srv", node("/srv"), withMounts(dir("/srv/p/sys"), Mount{"/srv/p", "proc"}), false, "the kernel's proc file system at /srv/p is guarded"},
		{"a sysfs bind under /srv", node(), withMounts(dir("/srv/s"), Mount{"/srv/s", "sysfs"}), true, "the kernel's sysfs file system at /srv/s is guarded"},
		{"serial port on devtmpfs", node(), withMounts(chr("/dev/ttyUSB0", 188, 0, "ttyUSB"), Mount{"/dev", "devtmpfs"}), false, ""},
		// none: only the entries.
		{"none", node("none"), dir("/srv/app"), false, "allows only the host paths given to it"},
		{"none refuses serial", node("none"), chr("/dev/ttyUSB0", 188, 0, "ttyUSB"), false, "allows only the host paths"},
		{"none and an entry", node("none", "/srv/app"), dir("/srv/app/data"), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Decide(tc.policy, tc.target, tc.ro)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "":
			case err == nil:
				t.Fatalf("allowed, want refused with %q", tc.want)
			case !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
			var r *Refused
			if err != nil && !errors.As(err, &r) {
				t.Fatalf("error %T is not a *Refused", err)
			}
		})
	}
}

// The data dir guard covers a directory that holds it even when the
// directory is in the built-in list.
func TestDataDirUnderDefault(t *testing.T) {
	p := Policy{Guarded: GuardedPaths("/srv/shoal")}
	if err := Decide(p, Target{Path: "/srv", Resolved: "/srv", Kind: Dir}, false); err == nil || !strings.Contains(err.Error(), "it contains /srv/shoal, which is guarded") {
		t.Fatalf("bind of /srv holding the data dir: %v", err)
	}
	if err := Decide(p, Target{Path: "/srv/app", Resolved: "/srv/app", Kind: Dir}, false); err != nil {
		t.Fatalf("bind of /srv/app beside the data dir: %v", err)
	}
}

func withMounts(t Target, ms ...Mount) Target {
	t.KernelMounts = ms
	return t
}

func TestParseDevices(t *testing.T) {
	const text = `Character devices:
  1 mem
  4 /dev/vc/0
  4 tty
  4 ttyS
 89 i2c
188 ttyUSB
254 gpiochip

Block devices:
  7 loop
254 virtblk
`
	for major, want := range map[uint32]string{1: "mem", 4: "tty", 89: "i2c", 188: "ttyUSB", 254: "gpiochip", 7: "", 5: ""} {
		if got := parseDevices(strings.NewReader(text), major); got != want {
			t.Errorf("major %d: %q, want %q", major, got, want)
		}
	}
}

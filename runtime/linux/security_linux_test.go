package linux

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// capHex is a capability set as /proc/PID/status shows it, cut to the
// capabilities this kernel has.
func capHex(t *testing.T, set uint64) string {
	t.Helper()
	return fmt.Sprintf("%016x", set&(uint64(1)<<(lastCap()+1)-1))
}

// run starts a container, waits for it to exit 0 and decodes its -info.
func runInfo(t *testing.T, rt *Runtime, s Spec) info {
	t.Helper()
	c, out := start(t, rt, s)
	if ex := c.Wait(); ex.Code != 0 {
		t.Fatalf("exit = %+v, output %q", ex, out.String())
	}
	return decodeInfo(t, out.String())
}

const (
	eperm  = "operation not permitted"
	einval = "invalid argument"
	erofs  = "read-only file system"
	enosys = "function not implemented"
)

// checkConfined checks the defaults from inside: capabilities, no_new_privs,
// the seccomp filter, and what they and the mounts refuse.
func checkConfined(t *testing.T, in info, wantCaps string) {
	t.Helper()
	for _, k := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if in.Status[k] != wantCaps {
			t.Errorf("%s = %s, want %s", k, in.Status[k], wantCaps)
		}
	}
	for _, k := range []string{"CapInh", "CapAmb"} {
		if in.Status[k] != "0000000000000000" {
			t.Errorf("%s = %s, want none", k, in.Status[k])
		}
	}
	if in.Status["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", in.Status["NoNewPrivs"])
	}
	if in.Status["Seccomp"] != "2" {
		t.Errorf("Seccomp = %q, want 2 (filter)", in.Status["Seccomp"])
	}
	for _, call := range []string{"mount", "unshare-user", "ptrace", "keyctl",
		"socket-vsock", "pidfd_getfd", "process_madvise", "open_tree_attr"} {
		if got := in.Syscalls[call]; got != eperm {
			t.Errorf("%s: %q, want %q", call, got, eperm)
		}
	}
	// Calls the allow list leaves out, one newer than its tables and one
	// newer than any kernel: ENOSYS, as from a kernel without them.
	for _, call := range []string{"listmount", "statmount", "file_getattr", "syscall-1000"} {
		if got := in.Syscalls[call]; got != enosys {
			t.Errorf("%s: %q, want %q", call, got, enosys)
		}
	}
	if in.KcoreBytes != 0 {
		t.Errorf("read %d bytes of /proc/kcore", in.KcoreBytes)
	}
	if in.SysWrite == "" {
		t.Error("wrote under /sys")
	}
}

func TestSecurityDefaults(t *testing.T) {
	rt, _ := newRuntime(t)
	t.Parallel()
	def, _ := capSet(nil, nil)
	in := runInfo(t, rt, Spec{Args: []string{"/app", "-info"}})
	t.Logf("status %v, syscalls %v, kcore %d %q, /sys %q", in.Status, in.Syscalls, in.KcoreBytes, in.KcoreErr, in.SysWrite)
	checkConfined(t, in, capHex(t, def))
	if !slices.Equal(in.Procs, []string{"1"}) {
		t.Errorf("/proc shows %v, want only [1]", in.Procs)
	}
	if !in.KeysMasked || !in.SysReadOnly {
		t.Errorf("/proc/keys masked %v, /sys read-only %v", in.KeysMasked, in.SysReadOnly)
	}
	if in.Uid != 0 || in.Gid != 0 {
		t.Errorf("uid:gid = %d:%d, want 0:0", in.Uid, in.Gid)
	}
	if in.IsTTY {
		t.Error("stdin is a terminal")
	}
}

func TestSecurityOptions(t *testing.T) {
	rt, _ := newRuntime(t)
	t.Parallel()
	in := runInfo(t, rt, Spec{
		Args:   []string{"/app", "-info"},
		CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"ALL"},
		AllowNewPrivileges: true, SeccompUnconfined: true,
		Rlimits: []Rlimit{{Type: "nofile", Soft: 100, Hard: 200}, {Type: "RLIMIT_CORE", Soft: 1 << 20, Hard: 2 << 20}},
	})
	want := capHex(t, 1<<12) // NET_ADMIN
	if in.Status["CapEff"] != want || in.Status["CapBnd"] != want {
		t.Errorf("CapEff %s, CapBnd %s; want %s", in.Status["CapEff"], in.Status["CapBnd"], want)
	}
	if in.Status["NoNewPrivs"] != "0" || in.Status["Seccomp"] != "0" {
		t.Errorf("NoNewPrivs %q, Seccomp %q; want 0 and 0", in.Status["NoNewPrivs"], in.Status["Seccomp"])
	}
	// Without the filter the kernel decides: keyctl works, a threaded
	// process gets EINVAL for a user namespace, mount needs CAP_SYS_ADMIN.
	t.Logf("unconfined syscalls: %v", in.Syscalls)
	// pidfd_getfd of its own fd and process_madvise with bad flags reach
	// the kernel, which answers them itself.
	if s := in.Syscalls; s["keyctl"] != "" || s["unshare-user"] != einval || s["mount"] != eperm ||
		s["pidfd_getfd"] != "" || s["process_madvise"] != einval {
		t.Errorf("unconfined syscalls: %v", s)
	}
	if in.NofileHard != 200 || in.CoreSoft != 1<<20 || in.CoreHard != 2<<20 {
		t.Errorf("rlimits: nofile hard %d, core %d:%d", in.NofileHard, in.CoreSoft, in.CoreHard)
	}
}

// userImage is a test image with users and groups.
func userImage(t *testing.T) string {
	img := testImage(t)
	// t.TempDir is 0700: a non-root user could not walk the container's /.
	if err := os.Chmod(img, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"passwd": testPasswd, "group": testGroup} {
		if err := os.WriteFile(filepath.Join(img, "etc", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func TestUser(t *testing.T) {
	rt, cfg := newRuntime(t)
	t.Parallel()
	img := userImage(t)
	def, _ := capSet(nil, nil)
	for _, tc := range []struct {
		user     string
		uid, gid int
		groups   []int
		home     string
	}{
		{"app", 1000, 1000, []int{29, 44}, "/home/app"},
		{"app:audio", 1000, 29, []int{44}, "/home/app"},
		{"4242:4243", 4242, 4243, nil, "/"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			t.Parallel()
			// /dev/stderr is the runtime's pipe, reopened through
			// /proc/self/fd/2: programs told to log "to a file" there.
			in := runInfo(t, rt, Spec{Image: img, User: tc.user, Args: []string{"/app", "-info", "-try-write", "/dev/stderr"}})
			if w := in.Writes["/dev/stderr"]; w != "" {
				t.Errorf("write /dev/stderr as %s: %s", tc.user, w)
			}
			if in.Uid != tc.uid || in.Gid != tc.gid || !slices.Equal(in.Groups, tc.groups) {
				t.Errorf("uid %d gid %d groups %v; want %d %d %v", in.Uid, in.Gid, in.Groups, tc.uid, tc.gid, tc.groups)
			}
			if !slices.Contains(in.Env, "HOME="+tc.home) {
				t.Errorf("env %v lacks HOME=%s", in.Env, tc.home)
			}
			// Not root: execve left no capabilities but the bound.
			none := "0000000000000000"
			if in.Status["CapEff"] != none || in.Status["CapPrm"] != none || in.Status["CapBnd"] != capHex(t, def) {
				t.Errorf("caps %v", in.Status)
			}
			if in.Status["Seccomp"] != "2" || in.Status["NoNewPrivs"] != "1" {
				t.Errorf("status %v", in.Status)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		id := testID(t)
		_, err := rt.Start(context.Background(), Spec{ID: id, Image: img, User: "nobody", Args: []string{"/app"}})
		if err == nil || !strings.Contains(err.Error(), `user "nobody" not found in the container's /etc/passwd`) {
			t.Errorf("Start: %v", err)
		}
		assertGone(t, cfg, id)
	})
}

func TestReadOnlyRootfs(t *testing.T) {
	rt, _ := newRuntime(t)
	t.Parallel()
	vol := t.TempDir()
	in := runInfo(t, rt, Spec{
		ReadOnlyRootfs: true, Cwd: "/new/dir",
		Mounts: []Mount{{Source: vol, Target: "/vol"}},
		Args:   []string{"/app", "-info", "-try-write", "/x,/etc/x,/tmp/x,/dev/shm/x,/dev/x,/vol/x"},
	})
	for p, want := range map[string]string{"/x": erofs, "/etc/x": erofs, "/tmp/x": "no such file or directory",
		"/dev/shm/x": "", "/dev/x": "", "/vol/x": ""} {
		if got := in.Writes[p]; !strings.HasSuffix(got, want) || (want == "") != (got == "") {
			t.Errorf("write %s: %q, want %q", p, got, want)
		}
	}
	if in.Cwd != "/new/dir" {
		t.Errorf("cwd %q", in.Cwd)
	}
}

func TestMounts(t *testing.T) {
	rt, cfg := newRuntime(t)
	t.Parallel()
	rw, ro, outside := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(rw, "hello"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ro, "hello"), []byte("ro"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A character device made by the test: /dev/zero's numbers.
	dev := filepath.Join(t.TempDir(), "zero")
	if err := unix.Mknod(dev, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))); err != nil {
		t.Fatal(err)
	}
	// A file system mounted below a volume's directory on the host (its
	// /proc, when the directory is /) is not the volume's: it stays out.
	sub := filepath.Join(rw, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(sub, "secret"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := testImage(t)
	// Symlinks that would lead out of the rootfs if followed on the host.
	if err := os.Symlink(outside, filepath.Join(img, "abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../.."+outside, filepath.Join(img, "rel")); err != nil {
		t.Fatal(err)
	}
	id := testID(t)
	in := runInfo(t, rt, Spec{
		ID: id, Image: img,
		Mounts: []Mount{
			{Source: rw, Target: "/data/rw"},
			{Source: ro, Target: "/data/ro", ReadOnly: true},
			{Source: filepath.Join(rw, "hello"), Target: "/etc/hello.conf"},
			{Source: dev, Target: "/dev/mydev"},
			{Source: ro, Target: "/abs/escape"},
			{Source: ro, Target: "/rel/escape2"},
		},
		Args: []string{"/app", "-info", "-try-write", "/data/rw/new,/data/ro/new",
			"-read", "/data/rw/hello,/data/ro/hello,/etc/hello.conf,/dev/mydev,/abs/escape/hello,/rel/escape2/hello,/data/rw/sub/secret"},
	})
	for p, want := range map[string]string{"/data/rw/new": "", "/data/ro/new": erofs} {
		if got := in.Writes[p]; !strings.HasSuffix(got, want) || (want == "") != (got == "") {
			t.Errorf("write %s: %q, want %q", p, got, want)
		}
	}
	for p, want := range map[string]string{
		"/data/rw/hello": "6869", "/data/ro/hello": "726f", "/etc/hello.conf": "6869",
		"/dev/mydev":        strings.Repeat("00", 16),
		"/abs/escape/hello": "726f", "/rel/escape2/hello": "726f",
		"/data/rw/sub/secret": "open /data/rw/sub/secret: no such file or directory",
	} {
		if got := in.Reads[p]; got != want {
			t.Errorf("read %s: %q, want %q", p, got, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(rw, "new")); err != nil || string(b) != "x" {
		t.Errorf("the write through the mount did not reach the host: %q, %v", b, err)
	}
	// The symlinked targets were made inside the rootfs, not at the host
	// path they name.
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("mount targets created outside the rootfs: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, id, "rootfs", "upper", outside, "escape")); err != nil {
		t.Errorf("target not made inside the rootfs: %v", err)
	}

	// Bad mounts fail the start with a reason.
	for _, tc := range []struct {
		m    Mount
		want string
	}{
		{Mount{Source: "/nonexistent-source", Target: "/x"}, "no such file or directory"},
		{Mount{Source: rw, Target: "/app"}, "the target in the image is not a directory, the source a directory"},
		{Mount{Source: rw, Target: "/"}, "target must be an absolute path other than /"},
		{Mount{Source: "rel", Target: "/x"}, "must be an absolute host path"},
	} {
		_, err := rt.Start(context.Background(), Spec{ID: testID(t), Image: img, Mounts: []Mount{tc.m}, Args: []string{"/app"}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mount %+v: err = %v, want %q", tc.m, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(img, "x")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed mount left a target in the image: %v", err)
	}
}

// A container with a network namespace of its own gets Docker's settings
// of it, so that a program of any user may listen on a port below 1024
// and ping; with the host's network the host's settings stay as they are.
func TestNetnsSysctls(t *testing.T) {
	rt, _ := newRuntime(t)
	t.Parallel()
	img := userImage(t)
	ports, ping := "/proc/sys/net/ipv4/ip_unprivileged_port_start", "/proc/sys/net/ipv4/ping_group_range"
	if _, err := os.Stat(ports); err != nil {
		t.Skipf("kernel without %s: %v", ports, err)
	}
	read := func(in info, p string) string {
		t.Helper()
		b, err := hex.DecodeString(in.Reads[p])
		if err != nil {
			t.Fatalf("read %s: %q", p, in.Reads[p])
		}
		return strings.Join(strings.Fields(string(b)), " ")
	}
	args := []string{"/app", "-info", "-read", ports + "," + ping}
	own := runInfo(t, rt, Spec{Image: img, User: "app", Args: args})
	if got := read(own, ports); got != "0" {
		t.Errorf("%s in the container's own network namespace = %q, want 0", ports, got)
	}
	if got := read(own, ping); got != "0 2147483647" {
		t.Errorf("%s in the container's own network namespace = %q, want 0 2147483647", ping, got)
	}
	host := runInfo(t, rt, Spec{Image: img, Args: args, HostNetwork: true})
	for _, p := range []string{ports, ping} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Join(strings.Fields(string(b)), " "); read(host, p) != want {
			t.Errorf("%s with the host's network = %q, the host has %q", p, read(host, p), want)
		}
	}
}

package linux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/runtime/cgroup"
	"github.com/shoal-edge/shoal/runtime/exit"
)

// info mirrors testdata/prog's Info.
type info struct {
	Pid             int
	Hostname        string
	Procs           []string
	Ifaces          []string
	LoUp            bool
	SysReadOnly     bool
	Cwd             string
	Args            []string
	Env             []string
	HostFileVisible bool
	Cgroup          string
	DevNull         bool
	KeysMasked      bool
	WriteErr        string

	Uid, Gid      int
	Groups        []int
	Status        map[string]string
	Syscalls      map[string]string
	KcoreBytes    int
	KcoreErr      string
	SysWrite      string
	Writes, Reads map[string]string
	NofileHard    uint64
	CoreSoft      uint64
	CoreHard      uint64
	IsTTY         bool
	TTYName       string
}

func decodeInfo(t *testing.T, out string) info {
	t.Helper()
	line, _, _ := strings.Cut(out, "\n")
	var in info
	if err := json.Unmarshal([]byte(line), &in); err != nil {
		t.Fatalf("decode info %q: %v", out, err)
	}
	return in
}

func TestIsolation(t *testing.T) {
	rt, cfg := newRuntime(t)
	t.Parallel()
	// A file the container must not see: the host's filesystem is gone.
	hostFile := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(hostFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	img := testImage(t)
	id := testID(t)
	c, out := start(t, rt, Spec{
		ID: id, Image: img, Hostname: "box",
		Args: []string{"/app", "-info", "-write", "/written.txt", "-hostfile", hostFile},
		Env:  []string{"FOO=bar"}, Cwd: "/work",
	})
	if ex := c.Wait(); ex.Code != 0 || ex.Err != nil {
		t.Fatalf("exit = %+v, output %q", ex, out.String())
	}
	in := decodeInfo(t, out.String())
	if in.Pid != 1 {
		t.Errorf("pid = %d, want 1", in.Pid)
	}
	if in.Hostname != "box" {
		t.Errorf("hostname = %q, want box", in.Hostname)
	}
	if !slices.Equal(in.Procs, []string{"1"}) {
		t.Errorf("/proc shows %v, want only [1]", in.Procs)
	}
	if !slices.Equal(in.Ifaces, []string{"lo"}) || !in.LoUp {
		t.Errorf("interfaces = %v (lo up %v), want only lo, up", in.Ifaces, in.LoUp)
	}
	if !in.SysReadOnly {
		t.Error("/sys is writable")
	}
	if in.HostFileVisible {
		t.Error("the container sees a host file")
	}
	if in.Cwd != "/work" {
		t.Errorf("cwd = %q, want /work", in.Cwd)
	}
	if !slices.Equal(in.Env, []string{"FOO=bar", "HOME=/"}) {
		t.Errorf("env = %v, want [FOO=bar HOME=/]", in.Env)
	}
	// In its own cgroup namespace, rooted at its group, every hierarchy
	// shows "/".
	for _, l := range strings.Split(in.Cgroup, "\n") {
		if !strings.HasSuffix(l, ":/") {
			t.Errorf("/proc/self/cgroup line %q: want the namespace root /", l)
		}
	}
	if !in.DevNull {
		t.Error("/dev/null not writable")
	}
	if !in.KeysMasked {
		t.Error("/proc/keys not masked")
	}
	if in.WriteErr != "" {
		t.Errorf("write in the container: %s", in.WriteErr)
	}
	// The write went to the container's upper layer, not into the image.
	upper := filepath.Join(cfg.StateDir, id, "rootfs", "upper", "written.txt")
	if b, err := os.ReadFile(upper); err != nil || string(b) != "from the container\n" {
		t.Errorf("upper layer file = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(img, "written.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("write reached the image: %v", err)
	}
	if err := c.Delete(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, cfg, id)
	if err := c.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestHostNetwork(t *testing.T) {
	rt, _ := newRuntime(t)
	t.Parallel()
	c, out := start(t, rt, Spec{Args: []string{"/app", "-info"}, HostNetwork: true})
	if ex := c.Wait(); ex.Code != 0 {
		t.Fatalf("exit = %+v", ex)
	}
	in := decodeInfo(t, out.String())
	host, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Ifaces) != len(host) {
		t.Errorf("interfaces = %v, want the host's %d", in.Ifaces, len(host))
	}
	if !in.SysReadOnly {
		t.Error("/sys is writable with the host network")
	}
}

func TestExitCodes(t *testing.T) {
	rt, _ := newRuntime(t)
	t.Parallel()
	c, _ := start(t, rt, Spec{Args: []string{"/app", "-exit", "3"}})
	// Wait from several goroutines, and again.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if ex := c.Wait(); ex.Code != 3 || ex.Signal != 0 || ex.OOMKilled {
				t.Errorf("exit = %+v, want code 3", ex)
			}
		})
	}
	wg.Wait()
	if ex := c.Wait(); ex.Code != 3 {
		t.Errorf("second Wait = %+v", ex)
	}

	// Found through the container's PATH (the default one).
	c, _ = start(t, rt, Spec{Args: []string{"prog", "-exit", "7"}})
	if ex := c.Wait(); ex.Code != 7 {
		t.Errorf("exit via PATH = %+v, want 7", ex)
	}

	c, out := start(t, rt, Spec{Args: []string{"/app", "-sleep", "1h"}})
	testutil.WaitFor(t, 10*time.Second, func() error { return wantOutput(out, "ready") })
	if err := c.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if ex := c.Wait(); ex.Code != 137 || ex.Signal != syscall.SIGKILL {
		t.Errorf("exit after SIGKILL = %+v, want 137 SIGKILL", ex)
	}
	if err := c.Signal(syscall.SIGTERM); err == nil {
		t.Error("Signal after exit: no error")
	}
}

func wantOutput(out *testutil.SyncBuffer, s string) error {
	if got := out.String(); !strings.Contains(got, s) {
		return errors.New("output so far: " + got)
	}
	return nil
}

func TestStop(t *testing.T) {
	rt, cfg := newRuntime(t)
	t.Parallel()
	c, out := start(t, rt, Spec{Args: []string{"/app", "-ignore-term", "-sleep", "1h"}})
	testutil.WaitFor(t, 10*time.Second, func() error { return wantOutput(out, "ready") })
	// From the host, PID 1 sits in the container's group.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.Pid()))
	if err != nil || !strings.Contains(string(b), "/"+cfg.CgroupParent+"/"+c.ID()+"\n") {
		t.Errorf("/proc/%d/cgroup = %q, %v; want %s/%s", c.Pid(), b, err, cfg.CgroupParent, c.ID())
	}
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// CPU time is always accounted; memory and pids need controllers
	// that the cgroup2 view of a hybrid host lacks.
	if st.CPUNanos == 0 || os.Getenv(cgroup2Env) == "" && (st.Pids == 0 || st.MemoryBytes == 0) {
		t.Errorf("Stats() = %+v, want CPU time, pids and memory", st)
	}
	begin := time.Now()
	if err := c.Stop(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < 300*time.Millisecond {
		t.Errorf("Stop returned after %v, before the grace period", took)
	}
	if ex := c.Wait(); ex.Code != 137 || ex.Signal != syscall.SIGKILL {
		t.Errorf("exit = %+v, want SIGKILL", ex)
	}
	if err := c.Stop(time.Second); err != nil {
		t.Errorf("Stop of a stopped container: %v", err)
	}
	// Delete of a running container kills it first.
	c2, out2 := start(t, rt, Spec{Args: []string{"/app", "-sleep", "1h"}})
	testutil.WaitFor(t, 10*time.Second, func() error { return wantOutput(out2, "ready") })
	if err := c2.Delete(); err != nil {
		t.Fatal(err)
	}
	if ex := c2.Wait(); ex.Signal != syscall.SIGKILL {
		t.Errorf("exit after Delete = %+v", ex)
	}
	assertGone(t, cfg, c2.ID())
}

func TestOOMKilled(t *testing.T) {
	rt, _ := newRuntime(t)
	t.Parallel()
	c, _ := start(t, rt, Spec{
		Args:      []string{"/app", "-alloc"},
		Resources: cgroup.Resources{Memory: 64 << 20, Pids: 64},
	})
	done := make(chan exit.Status, 1)
	go func() { done <- c.Wait() }()
	select {
	case ex := <-done:
		if !ex.OOMKilled || ex.Code != 137 {
			t.Errorf("exit = %+v, want OOMKilled with code 137", ex)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("allocating program not killed under a 64 MiB limit")
	}
}

func TestStartErrors(t *testing.T) {
	rt, cfg := newRuntime(t)
	t.Parallel()
	img := testImage(t)
	for _, tc := range []struct {
		name string
		spec Spec
		want string
		is   error
	}{
		{"missing program", Spec{Args: []string{"/nope"}}, "exec /nope: no such file or directory in the container", fs.ErrNotExist},
		{"not in PATH", Spec{Args: []string{"nope"}, Env: []string{"PATH=/bin"}}, `exec nope: executable file not found in PATH "/bin" in the container`, fs.ErrNotExist},
		{"not executable", Spec{Args: []string{"/etc"}}, "exec /etc: is a directory", fs.ErrPermission},
		{"missing image", Spec{Args: []string{"/app"}, Image: "/nonexistent-image"}, "image rootfs", nil},
		// These fail in the init before its parent has placed it in its
		// cgroup: the init's error must come back, not a broken pipe.
		{"missing mount source", Spec{Args: []string{"/app"}, Mounts: []Mount{{Source: "/nonexistent-source", Target: "/x"}}}, "container init: mount /nonexistent-source on /x", fs.ErrNotExist},
		{"unknown user", Spec{Args: []string{"/app"}, User: "nosuchuser"}, `user "nosuchuser" not found in the container's /etc/passwd`, nil},
		{"no args", Spec{}, "no command", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			s.ID = testID(t)
			if s.Image == "" {
				s.Image = img
			}
			_, err := rt.Start(context.Background(), s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start: err = %v, want %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
			assertGone(t, cfg, s.ID)
		})
	}
	// A second container with a live id is refused.
	c, _ := start(t, rt, Spec{Args: []string{"/app", "-sleep", "1h"}})
	if _, err := rt.Start(context.Background(), Spec{ID: c.ID(), Image: img, Args: []string{"/app"}}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate id: err = %v", err)
	}
}

func TestCleanup(t *testing.T) {
	rt, cfg := newRuntime(t)
	t.Parallel()
	// The daemon "dies": its containers are never deleted.
	s := Spec{ID: testID(t), Image: testImage(t), Args: []string{"/app", "-sleep", "1h"}}
	c, err := rt.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	s.ID = testID(t)
	c2, err := rt.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	_ = c2.Signal(syscall.SIGKILL)
	c2.Wait()
	// The next daemon cleans up with a fresh Runtime.
	rt2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt2.Cleanup(nil); err != nil {
		t.Fatal(err)
	}
	if ex := c.Wait(); ex.Signal != syscall.SIGKILL {
		t.Errorf("leftover container exit = %+v, want killed", ex)
	}
	assertGone(t, cfg, c.ID())
	assertGone(t, cfg, c2.ID())
	if ents, _ := os.ReadDir(cfg.StateDir); len(ents) != 0 {
		t.Errorf("state dir not empty: %v", ents)
	}
	if err := rt2.Cleanup(nil); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
}

// The container's PID 1 is in its own cgroup from the host's point of view
// (on cgroup v2 it is born there, with CLONE_INTO_CGROUP).
func TestInItsCgroup(t *testing.T) {
	rt, cfg := newRuntime(t)
	t.Parallel()
	c, _ := start(t, rt, Spec{Args: []string{"/app", "-sleep", "1h"}})
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	want := "/" + cfg.CgroupParent + "/" + c.ID()
	found := false
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && (parts[1] == "" || strings.Contains(parts[1], "memory")) && parts[2] == want {
			found = true
		}
	}
	if !found {
		t.Fatalf("/proc/%d/cgroup does not place PID 1 in %s:\n%s", c.Pid(), want, b)
	}
	if err := c.Stop(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/runtime/cgroup"
	"golang.org/x/sys/unix"
)

const oneOffPrefix = "oneoff."

// runOneOff starts a one-off of the test program, waits for it and deletes
// it, and returns its id and output.
func runOneOff(t *testing.T, rt *Runtime, cfg Config, img string, s Spec) (string, string) {
	t.Helper()
	out := &testutil.SyncBuffer{}
	s.Image, s.Stdout, s.Stderr = img, out, testutil.LogWriter(t)
	c, err := rt.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if ex := c.Wait(); ex.Code != 0 || ex.Err != nil {
		t.Fatalf("exit = %+v, output %q", ex, out.String())
	}
	if err := c.Delete(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, cfg, c.ID())
	return c.ID(), out.String()
}

// spareID waits until rt has a spare ready to hand out (its group may exist
// well before) and its cgroup parent holds exactly one group (no container
// runs: it is the spare's), and returns the group's name.
func spareID(t *testing.T, rt *Runtime, cfg Config) string {
	t.Helper()
	var id string
	err := testutil.Poll(10*time.Second, func() error {
		if !rt.spares.one.Ready() {
			return errors.New("no spare ready")
		}
		ids, err := cgroup.List(cfg.CgroupParent)
		if err != nil {
			return err
		}
		if len(ids) != 1 || !strings.HasPrefix(ids[0], oneOffPrefix) {
			return fmt.Errorf("groups under %s: %v, want one spare", cfg.CgroupParent, ids)
		}
		id = ids[0]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// spareInit waits until the spare's init is in its group (a spare is handed
// out while it is still being moved in) and returns its pid.
func spareInit(t *testing.T, cfg Config, id string) int {
	t.Helper()
	var pids []int
	err := testutil.Poll(10*time.Second, func() error {
		if pids = spareProcs(t, cfg, id); len(pids) != 1 {
			return fmt.Errorf("spare group %s holds %v, want its init", id, pids)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pids[0]
}

// spareProcs lists the processes in the spare's group.
func spareProcs(t *testing.T, cfg Config, id string) []int {
	t.Helper()
	cg, err := cgroup.Load(cfg.CgroupParent, id)
	if errors.Is(err, cgroup.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	pids, err := cg.Procs()
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

func TestOneOffSpare(t *testing.T) {
	rt, cfg := newRuntimeWith(t, oneOffPrefix, time.Minute)
	img := testImage(t)

	// The first one-off starts as any container and leaves a spare.
	first, _ := runOneOff(t, rt, cfg, img, Spec{Args: []string{"/app"}})
	if !strings.HasPrefix(first, oneOffPrefix) {
		t.Fatalf("one-off id %q lacks the prefix %q", first, oneOffPrefix)
	}
	spare := spareID(t, rt, cfg)
	spareInit(t, cfg, spare)

	// The next one starts on it, and is a container like any other.
	id, out := runOneOff(t, rt, cfg, img, Spec{
		Hostname: "box", Args: []string{"/app", "-info", "-write", "/written.txt"}, Env: []string{"FOO=bar"},
	})
	if id != spare {
		t.Fatalf("one-off %s did not start on the spare %s", id, spare)
	}
	in := decodeInfo(t, out)
	if in.Pid != 1 || in.Hostname != "box" || !slices.Equal(in.Procs, []string{"1"}) {
		t.Errorf("pid %d, hostname %q, /proc shows %v: want 1, box, [1]", in.Pid, in.Hostname, in.Procs)
	}
	if !slices.Equal(in.Ifaces, []string{"lo"}) || !in.LoUp || !in.SysReadOnly || !in.KeysMasked {
		t.Errorf("interfaces %v (lo up %v), /sys read-only %v, /proc/keys masked %v", in.Ifaces, in.LoUp, in.SysReadOnly, in.KeysMasked)
	}
	if !slices.Equal(in.Env, []string{"FOO=bar", "HOME=/"}) || in.WriteErr != "" {
		t.Errorf("env %v, write error %q", in.Env, in.WriteErr)
	}
	for _, l := range strings.Split(in.Cgroup, "\n") {
		if !strings.HasSuffix(l, ":/") {
			t.Errorf("/proc/self/cgroup line %q: want its own cgroup namespace", l)
		}
	}
	if in.Status["NoNewPrivs"] != "1" || in.Status["Seccomp"] != "2" {
		t.Errorf("no_new_privs %q, seccomp %q: want 1 and 2", in.Status["NoNewPrivs"], in.Status["Seccomp"])
	}

	// Its / has the image's mode: a user other than root can walk it,
	// and read the /etc/hosts written for it.
	next := spareID(t, rt, cfg)
	id, out = runOneOff(t, rt, cfg, img, Spec{User: "4242", Args: []string{"/app", "-info", "-read", "/usr/bin/prog,/etc/hosts"}})
	if id != next {
		t.Fatalf("one-off %s did not start on the spare %s", id, next)
	}
	in = decodeInfo(t, out)
	if in.Uid != 4242 || strings.Contains(in.Reads["/usr/bin/prog"], "denied") {
		t.Errorf("uid %d read /usr/bin/prog: %q, want it read as 4242", in.Uid, in.Reads["/usr/bin/prog"])
	}
	if want := fmt.Sprintf("%x", "# Written by sho"); in.Reads["/etc/hosts"] != want {
		t.Errorf("uid %d read /etc/hosts: %q, want %q", in.Uid, in.Reads["/etc/hosts"], want)
	}

	// A spare killed while it waited is passed over.
	dead := spareID(t, rt, cfg)
	pid := spareInit(t, cfg, dead)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Dead, not yet reaped, and with all its threads gone: then waiting
	// for it would return.
	err := testutil.Poll(5*time.Second, func() error {
		var info unix.Siginfo
		if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil || info.Signo != 0 {
			return nil
		}
		return fmt.Errorf("spare init %d still runs", pid)
	})
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := runOneOff(t, rt, cfg, img, Spec{Args: []string{"/app"}}); id == dead {
		t.Fatalf("one-off %s started on the killed spare", id)
	}
	assertGone(t, cfg, dead)

	// A one-off that does not fit a spare leaves it alone.
	next = spareID(t, rt, cfg)
	hostID, _ := runOneOff(t, rt, cfg, img, Spec{Args: []string{"/app"}, HostNetwork: true})
	if hostID == next {
		t.Fatalf("a host-network one-off started on the spare %s", next)
	}
	if got := spareID(t, rt, cfg); got != next {
		t.Fatalf("spare %s replaced by %s", next, got)
	}

	// Close removes the spare: no process, no group.
	pids := []int{spareInit(t, cfg, next)}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, cfg, next)
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("spare init %d outlived Close", pid)
		}
	}
}

func TestOneOffSpareRetires(t *testing.T) {
	// Idle long enough for spareID to see the spare on a loaded machine
	// before it retires.
	rt, cfg := newRuntimeWith(t, oneOffPrefix, 3*time.Second)
	runOneOff(t, rt, cfg, testImage(t), Spec{Args: []string{"/app"}})
	spare := spareID(t, rt, cfg)
	pids := []int{spareInit(t, cfg, spare)}
	err := testutil.Poll(20*time.Second, func() error {
		if ids, err := cgroup.List(cfg.CgroupParent); err != nil || len(ids) > 0 {
			return fmt.Errorf("groups %v (%v): the idle spare is still there", ids, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("retired spare's init %d still runs", pid)
		}
	}
}

func TestOneOffWithoutSpares(t *testing.T) {
	rt, cfg := newRuntimeWith(t, oneOffPrefix, 0)
	img := testImage(t)
	runOneOff(t, rt, cfg, img, Spec{Args: []string{"/app"}})
	// A spare takes some 20 ms to appear; none may in ten times that.
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if ids, err := cgroup.List(cfg.CgroupParent); err != nil || len(ids) > 0 {
			t.Fatalf("groups %v (%v) after a one-off with SpareIdle 0: want none", ids, err)
		}
	}
}

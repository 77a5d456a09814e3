package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// The test binary doubles as the process put into groups: with
// CGROUP_TEST_HELPER set it sleeps or allocates instead of running tests.
func TestMain(m *testing.M) {
	switch os.Getenv("CGROUP_TEST_HELPER") {
	case "sleep":
		time.Sleep(time.Hour)
		os.Exit(0)
	case "alloc":
		// Wait for the go-ahead so nothing is allocated before the
		// test has placed the process in its group.
		_, _ = os.Stdin.Read(make([]byte, 1))
		var hog [][]byte
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			hog = append(hog, b)
		}
	}
	os.Exit(m.Run())
}

// hosts lists the drivers this machine can run: a hybrid host runs both,
// v2 on its (controller-less) unified mount.
func hosts(t *testing.T) map[string]host {
	switch cgroups.Mode() {
	case cgroups.Unified:
		return map[string]host{"v2": {v2Root: "/sys/fs/cgroup"}}
	case cgroups.Hybrid:
		return map[string]host{"v1": {v1: cgroup1.Default}, "v2": {v2Root: "/sys/fs/cgroup/unified"}}
	case cgroups.Legacy:
		return map[string]host{"v1": {v1: cgroup1.Default}}
	}
	t.Skip("no cgroups on this host")
	return nil
}

// testParent returns a parent group unique to the test and removes it when
// the test ends, so tests run in parallel with each other and other packages.
func testParent(t *testing.T, h host) string {
	parent := fmt.Sprintf("shoal-test-%d", rand.Uint32())
	t.Cleanup(func() {
		if h.v2Root != "" {
			_ = rmdirTree(h.v2Root + "/" + parent)
			return
		}
		subs, _ := h.v1()
		for _, s := range subs {
			if p, ok := s.(pather); ok {
				_ = rmdirTree(p.Path("/" + parent))
			}
		}
	})
	return parent
}

// has says whether the driver can enforce limits of the named controller.
func has(h host, controller string) bool {
	if h.v2Root != "" {
		b, _ := os.ReadFile(h.v2Root + "/cgroup.controllers")
		return slices.Contains(strings.Fields(string(b)), controller)
	}
	_, err := os.Stat("/sys/fs/cgroup/" + controller)
	return err == nil
}

// proc is a helper process; done is closed once it has been reaped.
type proc struct {
	cmd   *exec.Cmd
	start *os.File // write a byte to let an allocator start
	done  chan struct{}
	err   error
}

// helper starts the test binary in the given mode and reaps it at the end.
func helper(t *testing.T, mode string) *proc {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: exec.Command(os.Args[0]), start: w, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "CGROUP_TEST_HELPER="+mode)
	p.cmd.Stdin = r
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		w.Close()
	})
	return p
}

// waitKilled waits for p to die of SIGKILL.
func (p *proc) waitKilled(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
		if !strings.Contains(fmt.Sprint(p.err), "killed") {
			t.Fatalf("helper ended with %v, want killed", p.err)
		}
	case <-time.After(timeout):
		t.Fatalf("helper still running after %v", timeout)
	}
}

func TestLifecycle(t *testing.T) {
	testutil.RequireRoot(t)
	for name, h := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			parent := testParent(t, h)
			cg, err := h.create(parent, "c1", Resources{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h.create(parent, "c1", Resources{}); !errors.Is(err, fs.ErrExist) {
				t.Errorf("second create: err = %v, want fs.ErrExist", err)
			}
			if got, want := cg.Path(), "/"+parent+"/c1"; got != want {
				t.Errorf("Path() = %q, want %q", got, want)
			}
			p := helper(t, "sleep")
			if err := cg.Add(p.cmd.Process.Pid); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), cg.Path()+"\n") {
				t.Errorf("/proc/pid/cgroup = %q, want it to contain %s", b, cg.Path())
			}
			if has(h, "pids") {
				st, err := cg.Stats()
				if err != nil {
					t.Fatal(err)
				}
				if st.Pids == 0 {
					t.Errorf("Stats() = %+v, want pids > 0", st)
				}
			}
			ids, err := h.list(parent)
			if err != nil || !slices.Equal(ids, []string{"c1"}) {
				t.Errorf("list(%s) = %v, %v; want [c1]", parent, ids, err)
			}
			loaded, err := h.load(parent, "c1")
			if err != nil {
				t.Fatal(err)
			}
			if oom, err := loaded.OOMKilled(); err != nil || oom {
				t.Errorf("OOMKilled() = %v, %v; want false", oom, err)
			}
			// Delete kills what is inside, waits, removes.
			if err := loaded.Delete(); err != nil {
				t.Fatal(err)
			}
			p.waitKilled(t, 10*time.Second)
			if ids, err := h.list(parent); err != nil || len(ids) != 0 {
				t.Errorf("list after Delete = %v, %v; want none", ids, err)
			}
			if _, err := h.load(parent, "c1"); !errors.Is(err, ErrNotExist) {
				t.Errorf("load after Delete: err = %v, want ErrNotExist", err)
			}
			if err := cg.Delete(); err != nil {
				t.Errorf("second Delete: %v", err)
			}
		})
	}
}

func TestKill(t *testing.T) {
	testutil.RequireRoot(t)
	for name, h := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cg, err := h.create(testParent(t, h), "k", Resources{})
			if err != nil {
				t.Fatal(err)
			}
			defer cg.Delete()
			p := helper(t, "sleep")
			if err := cg.Add(p.cmd.Process.Pid); err != nil {
				t.Fatal(err)
			}
			if err := cg.Kill(); err != nil {
				t.Fatal(err)
			}
			p.waitKilled(t, 10*time.Second)
		})
	}
}

func TestLimits(t *testing.T) {
	testutil.RequireRoot(t)
	for name, h := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := Resources{Memory: 64 << 20, CPU: 0.5, Pids: 100}
			parent := testParent(t, h)
			if !has(h, "memory") || !has(h, "cpu") || !has(h, "pids") {
				if _, err := h.create(parent, "l", r); err == nil || !strings.Contains(err.Error(), "controller") && !strings.Contains(err.Error(), "hierarchy") {
					t.Errorf("create with limits but without controllers: err = %v, want a missing controller", err)
				}
				if ids, _ := h.list(parent); len(ids) != 0 {
					t.Errorf("failed create left %v behind", ids)
				}
				return
			}
			cg, err := h.create(parent, "l", r)
			if err != nil {
				t.Fatal(err)
			}
			defer cg.Delete()
			want := map[string]string{"memory.max": "67108864", "cpu.max": "50000 100000", "cpu.weight": "20", "pids.max": "100"}
			dir := func(string) string { return h.v2Root + cg.Path() }
			if h.v2Root == "" {
				want = map[string]string{"memory.limit_in_bytes": "67108864", "cpu.cfs_quota_us": "50000", "cpu.shares": "512", "pids.max": "100"}
				dir = func(f string) string { return "/sys/fs/cgroup/" + strings.Split(f, ".")[0] + cg.Path() }
			}
			for f, v := range want {
				b, err := os.ReadFile(dir(f) + "/" + f)
				if err != nil || strings.TrimSpace(string(b)) != v {
					t.Errorf("%s = %q, %v; want %q", f, b, err, v)
				}
			}
		})
	}
}

func TestOOMKilled(t *testing.T) {
	testutil.RequireRoot(t)
	for name, h := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if !has(h, "memory") {
				t.Skip("no memory controller in this hierarchy")
			}
			cg, err := h.create(testParent(t, h), "oom", Resources{Memory: 32 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer cg.Delete()
			p := helper(t, "alloc")
			if err := cg.Add(p.cmd.Process.Pid); err != nil {
				t.Fatal(err)
			}
			if _, err := p.start.Write([]byte{1}); err != nil {
				t.Fatal(err)
			}
			p.waitKilled(t, 20*time.Second)
			testutil.WaitFor(t, 5*time.Second, func() error {
				oom, err := cg.OOMKilled()
				if err != nil || !oom {
					return fmt.Errorf("OOMKilled() = %v, %v", oom, err)
				}
				return nil
			})
		})
	}
}

// WarmMigration moves this process into the group it is in: the file it
// writes must be that group's, one that lists this process.
func TestOwnProcsFile(t *testing.T) {
	h, err := detect()
	if err != nil || h.v2Root != "" {
		t.Skip("not a cgroup v1 or hybrid host: WarmMigration does nothing")
	}
	f := ownProcsFile()
	if f == "" {
		t.Fatal("no cgroup.procs found for this process")
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Fields(string(b)), strconv.Itoa(os.Getpid())) {
		t.Fatalf("%s does not list this process (%d)", f, os.Getpid())
	}
}

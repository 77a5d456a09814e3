package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// shoalBin is the binary under test, built once per test run.
func shoalBin(t testing.TB) string { return testutil.ShoalBinary(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveShoalBinary()
	os.Exit(code)
}

// node is one `shoal up` process.
type node struct {
	t       *testing.T
	bin     string
	dataDir string
	args    []string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	done    chan struct{}
}

func newNode(t *testing.T, name string) *node {
	testutil.RequireRoot(t)
	n := &node{t: t, bin: shoalBin(t), dataDir: t.TempDir()}
	n.args = []string{"--data-dir", n.dataDir, "up", "--name", name, "--bind", "127.0.0.1",
		"--gossip-port", fmt.Sprint(testutil.FreePort(t)), "--port", fmt.Sprint(testutil.FreePort(t))}
	t.Cleanup(func() {
		// The log first: a check below may end the test.
		defer func() {
			if t.Failed() && n.log != nil {
				t.Logf("log of %s:\n%s", name, n.log)
			}
		}()
		n.removeAllApps()
		n.stop()
		if _, err := os.Stat(filepath.Join(n.dataDir, "node.json")); n.cmd == nil || err != nil {
			return // a node that never got its identity never ran anything
		}
		// Containers outlive `shoal up`; with its apps removed first,
		// nothing of it may remain on the host after it exits.
		if left := leftovers(n.dataDir, n.cgroupParent()); len(left) > 0 {
			t.Errorf("left behind after shoal up exited: %v", left)
		}
	})
	return n
}

func (n *node) start() {
	n.t.Helper()
	n.startWith(func() error {
		var st struct {
			Leader    string `json:"leader"`
			ClusterID string `json:"cluster_id"`
		}
		if err := n.json(&st, "status", "-o", "json"); err != nil {
			return err
		}
		if st.Leader == "" || st.ClusterID == "" {
			return fmt.Errorf("no leader yet: %+v", st)
		}
		return nil
	})
}

// startWith starts the node and waits until ready says it is: for a node
// that starts without a leader to find.
func (n *node) startWith(ready func() error) {
	n.t.Helper()
	n.log = &bytes.Buffer{}
	n.cmd = exec.Command(n.bin, n.args...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func() { n.cmd.Wait(); close(n.done) }()
	// Generous: a loaded CI machine runs this beside every other package.
	testutil.WaitFor(n.t, 30*time.Second, func() error {
		select {
		case <-n.done:
			return fmt.Errorf("shoal up exited: %v", n.cmd.ProcessState)
		default:
		}
		return ready()
	})
}

// cgroupParent is the cgroup the node's containers live under: named by
// the node's id, from its data dir.
func (n *node) cgroupParent() string { return cgroupParentOf(n.t, n.dataDir) }

// cgroupParentOf is the cgroup of the containers of the node of dataDir.
func cgroupParentOf(t testing.TB, dataDir string) string {
	t.Helper()
	var id struct{ ID string }
	b, err := os.ReadFile(filepath.Join(dataDir, "node.json"))
	if err != nil || json.Unmarshal(b, &id) != nil || len(id.ID) < 12 {
		t.Fatalf("node.json of %s: %v", dataDir, err)
	}
	return "shoal-" + id.ID[:12]
}

// removeAllApps deletes every app and waits until their containers and
// monitors are gone, so that the node can stop leaving nothing behind.
func (n *node) removeAllApps() {
	if n.cmd == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	var ps []instance
	if err := n.json(&ps, "ps", "-o", "json"); err != nil {
		return
	}
	apps := map[string]bool{}
	for _, i := range ps {
		apps[i.App] = true
	}
	for app := range apps {
		n.shoal("rm", app)
	}
	testutil.Poll(30*time.Second, func() error {
		if m := monitorsOf(n.dataDir, false); len(m) > 0 {
			return fmt.Errorf("monitors still running: %v", m)
		}
		return nil
	})
}

// running reports whether the node's `shoal up` runs.
func (n *node) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (n *node) stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
		n.t.Errorf("shoal up did not exit within 30s of SIGTERM")
	}
}

// shoal runs a CLI command against this node.
func (n *node) shoal(args ...string) (stdout, stderr string, code int) {
	n.t.Helper()
	return n.shoalEnv(nil, args...)
}

// shoalEnv runs a CLI command against this node with env added to the
// CLI's environment.
func (n *node) shoalEnv(env []string, args ...string) (stdout, stderr string, code int) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.bin, append([]string{"--data-dir", n.dataDir}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		n.t.Fatalf("shoal %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// must runs a command that has to succeed.
func (n *node) must(args ...string) string {
	n.t.Helper()
	out, errOut, code := n.shoal(args...)
	if code != 0 {
		n.t.Fatalf("shoal %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (n *node) json(v any, args ...string) error {
	out, errOut, code := n.shoal(args...)
	if code != 0 {
		return fmt.Errorf("shoal %v: exit %d: %s", args, code, errOut)
	}
	return json.Unmarshal([]byte(out), v)
}

type instance struct {
	App      string `json:"app"`
	Instance string `json:"instance"`
	Node     string `json:"node"`
	Version  uint64 `json:"version"`
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	PID      int    `json:"pid"`
	ExitCode int    `json:"exit_code"`
	IP       string `json:"ip"`
}

func (n *node) ps() []instance {
	n.t.Helper()
	var out []instance
	if err := n.json(&out, "ps", "-o", "json"); err != nil {
		n.t.Fatal(err)
	}
	return out
}

func (n *node) writeFile(name, content string) string {
	p := filepath.Join(n.t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		n.t.Fatal(err)
	}
	return p
}

// leftovers lists what a stopped node may leave on the host: mounts under the
// data dir, cgroups named after the node, live processes of an app.
func leftovers(dataDir, cgroupName string, pids ...int) []string {
	return leftoversOf(dataDir, cgroupName, false, pids...)
}

// leftoversWhileRunning allows the node's own parent cgroup and its spare
// monitor.
func leftoversWhileRunning(dataDir, cgroupName string, pids ...int) []string {
	return leftoversOf(dataDir, cgroupName, true, pids...)
}

func leftoversOf(dataDir, cgroupName string, running bool, pids ...int) []string {
	var out []string
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(mi), "\n") {
			if strings.Contains(l, dataDir) {
				out = append(out, "mount: "+l)
			}
		}
	}
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/unified"} {
		entries, _ := os.ReadDir(filepath.Join(root, cgroupName))
		for _, e := range entries {
			if e.IsDir() {
				out = append(out, "cgroup: "+filepath.Join(root, cgroupName, e.Name()))
			}
		}
	}
	if !running {
		matches, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgroupName)
		for _, m := range matches {
			out = append(out, "cgroup: "+m)
		}
	}
	for _, pid := range pids {
		if pid > 0 && syscall.Kill(pid, 0) == nil {
			out = append(out, fmt.Sprintf("process %d still alive", pid))
		}
	}
	// A running node keeps a spare monitor; a stopped one none.
	for _, m := range monitorsOf(dataDir, !running) {
		out = append(out, "monitor: "+m)
	}
	return out
}

// monitorsOf lists the monitor processes serving containers of a data dir,
// and with spares its spare monitor (argv "__shoal_monitor - DATA/monitors").
func monitorsOf(dataDir string, spares bool) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "__shoal_monitor") && strings.Contains(cmd, dataDir) && (spares || !strings.Contains(cmd, "__shoal_monitor - ")) {
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(p, "/proc/"), "/cmdline")+": "+cmd)
		}
	}
	return out
}

// assertEmbeddedMonitor checks that the container pid is the child of a
// monitor that runs the program embedded in shoal, from its memfd.
func assertEmbeddedMonitor(t *testing.T, pid int) {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The parent follows the state, after the ")" that ends the name.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	parent := fields[1]
	comm, _ := os.ReadFile("/proc/" + parent + "/comm")
	exe, _ := os.Readlink("/proc/" + parent + "/exe")
	if string(comm) != "shoal-monitor\n" || !strings.HasPrefix(exe, "/memfd:shoal-monitor") {
		t.Errorf("the container's parent %s is %q running %q, want shoal-monitor from its memfd", parent, comm, exe)
	}
}

func readDirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, err
}

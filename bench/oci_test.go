package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The OCI runtimes compared with shoal run the same busybox root file
// system, unpacked from the same archive by umoci, with the config.json that
// their own `spec` command writes, edited only where it must be: the
// command, no terminal, the root path, and a cgroup path of our own so that
// leftovers can be found.

// timeRun runs cmd with its output in a buffer and returns how long it took
// from start to exit. The runtimes and shoal are all timed by this one
// function, in this process or in the crun helper.
func timeRun(cmd *exec.Cmd) (time.Duration, []byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	return time.Since(start), out.Bytes(), err
}

func run(tb testing.TB, name string, args ...string) []byte {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// unpackRootfs unpacks the docker-archive's image into a directory and
// returns the path of its root file system.
func unpackRootfs(b *testing.B, archive string) string {
	b.Helper()
	tmp := b.TempDir()
	layout, dir := filepath.Join(tmp, "oci"), filepath.Join(tmp, "unpacked")
	run(b, "skopeo", "copy", "--quiet", "docker-archive:"+archive, "oci:"+layout+":1")
	run(b, "umoci", "unpack", "--image", layout+":1", dir)
	return filepath.Join(dir, "rootfs")
}

// ociBundle writes a bundle for runtime (runc or crun) whose config.json is
// the runtime's own `spec`, running args on rootfs.
func ociBundle(b *testing.B, runtime, rootfs string, args []string) string {
	b.Helper()
	dir := filepath.Join(b.TempDir(), runtime+"-bundle")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(runtime, "spec")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s spec: %v\n%s", runtime, err, out)
	}
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		b.Fatalf("%s spec: %v", runtime, err)
	}
	process, _ := spec["process"].(map[string]any)
	root, _ := spec["root"].(map[string]any)
	linux, _ := spec["linux"].(map[string]any)
	if process == nil || root == nil || linux == nil {
		b.Fatalf("%s spec lacks process, root or linux: %s", runtime, data)
	}
	process["args"] = args
	process["terminal"] = false
	root["path"] = rootfs
	linux["cgroupsPath"] = "/" + cgroupPrefix + runtime
	if data, err = json.MarshalIndent(spec, "", "  "); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}

// cgroupPrefix starts the cgroup names the OCI runtimes are given.
const cgroupPrefix = "shoal-bench-"

// ociCleanup deletes what runc may have left of containers named prefix*
// after a failed run, and their cgroups.
func ociCleanup(tb testing.TB, runtime, root, prefix string) {
	out, _ := exec.Command(runtime, "--root", root, "list", "-q").Output()
	for _, id := range strings.Fields(string(out)) {
		if strings.HasPrefix(id, prefix) {
			exec.Command(runtime, "--root", root, "delete", "-f", id).Run()
		}
	}
	removeCgroups(tb, cgroupPrefix+runtime)
}

// removeCgroups removes cgroup directories named name in every hierarchy
// (they are empty once their processes are gone) and reports any that
// remain.
func removeCgroups(tb testing.TB, name string) {
	matches, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if m, _ := filepath.Glob("/sys/fs/cgroup/" + name); len(m) > 0 {
		matches = append(matches, m...)
	}
	for _, m := range matches {
		if err := syscall.Rmdir(m); err != nil && !errors.Is(err, syscall.ENOENT) {
			tb.Errorf("cgroup %s left behind: %v", m, err)
		}
	}
}

// The crun helper. Debian 12's crun 1.8 refuses a hybrid cgroup host
// ("cgroups in hybrid mode not supported"). The benchmark starts this test
// binary again as a helper in a new mount namespace, where it unmounts
// /sys/fs/cgroup/unified once, so crun sees a cgroup v1 host; the helper
// then runs each command it is sent and times it with timeRun, exactly as
// the benchmark times runc and shoal. Neither the namespace nor the
// round trip to the helper is in the figures.

const helperEnv = "SHOAL_BENCH_CRUN_HELPER"

type helperRequest struct {
	Args []string `json:"args"`
}

type helperReply struct {
	Nanos  time.Duration `json:"nanos"`
	Output string        `json:"output,omitempty"`
	Err    string        `json:"err,omitempty"`
}

// crunHelperMain is the helper's main: requests on stdin, replies on stdout.
func crunHelperMain() int {
	enc := json.NewEncoder(os.Stdout)
	if err := syscall.Unmount("/sys/fs/cgroup/unified", syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
		enc.Encode(helperReply{Err: "unmount /sys/fs/cgroup/unified: " + err.Error()})
		return 1
	}
	enc.Encode(helperReply{}) // ready
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var req helperRequest
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil || len(req.Args) == 0 {
			enc.Encode(helperReply{Err: fmt.Sprintf("bad request %q", sc.Text())})
			continue
		}
		d, out, err := timeRun(exec.Command(req.Args[0], req.Args[1:]...))
		rep := helperReply{Nanos: d, Output: string(out)}
		if err != nil {
			rep.Err = err.Error()
		}
		enc.Encode(rep)
	}
	return 0
}

// nsHelper is the benchmark's side of a running helper.
type nsHelper struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *json.Decoder
	mu   sync.Mutex // serialises requests
	done chan struct{}
}

// startNSHelper starts the helper; Cleanup ends it.
func startNSHelper(b *testing.B) *nsHelper {
	b.Helper()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	h := &nsHelper{cmd: exec.Command(self), done: make(chan struct{})}
	h.cmd.Env = append(os.Environ(), helperEnv+"=1")
	h.cmd.Stderr = os.Stderr
	// A new mount namespace whose mounts Go makes private (MS_REC|MS_PRIVATE
	// on /), so the unmount stays in it.
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if h.in, err = h.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	h.out = json.NewDecoder(stdout)
	if err := h.cmd.Start(); err != nil {
		b.Fatalf("start crun helper: %v", err)
	}
	go func() { h.cmd.Wait(); close(h.done) }()
	b.Cleanup(func() {
		h.in.Close()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			h.cmd.Process.Kill()
			<-h.done
		}
	})
	var ready helperReply
	if err := h.out.Decode(&ready); err != nil || ready.Err != "" {
		b.Fatalf("crun helper: %v %s", err, ready.Err)
	}
	return h
}

// run has the helper run args and returns the time it measured.
func (h *nsHelper) run(args ...string) (time.Duration, []byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	line, _ := json.Marshal(helperRequest{Args: args})
	if _, err := h.in.Write(append(line, '\n')); err != nil {
		return 0, nil, fmt.Errorf("crun helper: %w", err)
	}
	var rep helperReply
	if err := h.out.Decode(&rep); err != nil {
		return 0, nil, fmt.Errorf("crun helper: %w", err)
	}
	if rep.Err != "" {
		return rep.Nanos, []byte(rep.Output), errors.New(rep.Err)
	}
	return rep.Nanos, []byte(rep.Output), nil
}

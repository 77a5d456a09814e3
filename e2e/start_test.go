package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
	bolt "go.etcd.io/bbolt"
)

// `shoal up` as an unprivileged user refuses at once, before it writes
// anything: a node that cannot run a container must not make a cluster
// first and fail at its first container.
func TestUpRefusesNonRoot(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	// The test's own binary lives in a directory only root may enter: the
	// user gets a copy in one everybody may.
	dir, err := os.MkdirTemp("", "shoal-nonroot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "shoal")
	copyFile(t, shoalBin(t), bin)
	data := filepath.Join(dir, "data")

	const nobody = 65534
	var out bytes.Buffer
	cmd := exec.Command(bin, "--data-dir", data, "up", "--name", "nr", "--bind", "127.0.0.1",
		"--port", fmt.Sprint(testutil.FreePort(t)), "--gossip-port", fmt.Sprint(testutil.FreePort(t)))
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("shoal up as uid %d still ran after 30s; output:\n%s", nobody, out.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("shoal up as uid %d: exit status %d (%v), want 1", nobody, code, err)
	}
	want := fmt.Sprintf("shoal: shoal up must run as root: a node runs containers in namespaces, cgroups and mounts of their own (running as uid %d); nothing was written\n", nobody)
	if out.String() != want {
		t.Errorf("shoal up as uid %d printed\n%q\nwant\n%q", nobody, out.String(), want)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		names, _ := readDirNames(data)
		t.Errorf("shoal up as uid %d left its data dir behind (%v): %v", nobody, err, names)
	}
}

// A normal join logs no ERROR line on either node, nor does the joined
// node when it stops cleanly: an ERROR is for an operator to act on. (A
// stopping node logged "failed to decode incoming command: transport
// shutdown" for a Raft message that reached it while Raft stopped, and
// memberlist "Failed to send gossip ...: use of closed network
// connection".)
func TestJoinLogsNoError(t *testing.T) {
	t.Parallel()
	f := voterAndNonVoterFleet(t, "b")
	f.waitFormed("a", []string{"a", "b"}, []string{"a"}, 30*time.Second)
	// a's Raft logs an ERROR for every heartbeat b misses once it is
	// gone: a's log is read before b stops.
	aLog, err := os.ReadFile(f.lab.LogPath("a"))
	if err != nil {
		t.Fatal(err)
	}
	// A stop races with the heartbeats that reach b while its Raft stops:
	// a few stops, each after b has a leader again.
	for i := range 3 {
		if err := f.lab.Stop("b", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			break
		}
		if err := f.lab.Restart("b"); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 30*time.Second, func() error {
			st, err := f.status("b")
			if err == nil && (st.Leader != "a" || st.Stale) {
				err = fmt.Errorf("b: leader %q, stale %v", st.Leader, st.Stale)
			}
			return err
		})
	}
	bLog, err := os.ReadFile(f.lab.LogPath("b"))
	if err != nil {
		t.Fatal(err)
	}
	for name, log := range map[string][]byte{"a": aLog, "b": bLog} {
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "level=ERROR") {
				t.Errorf("%s logged: %s", name, line)
			}
		}
	}
}

// `shoal logs` of an instance whose node is down says so, naming the node,
// with a non-zero exit status; the instance's app as a whole goes on with
// the instances it can read.
func TestLogsOfDownNode(t *testing.T) {
	t.Parallel()
	f := voterAndNonVoterFleet(t, "a")
	f.importTestprog(t, "a", "b")
	spec := filepath.Join(t.TempDir(), "app.yaml")
	os.WriteFile(spec, []byte(`name: everywhere
image: testprog:1
command: ["/app", "-stdout", "hello", "-sleep", "1h"]
mode: global
`), 0o644)
	f.mustCLI("a", "apply", "-f", spec)
	t.Cleanup(func() {
		if !f.lab.Running("b") && f.lab.Restart("b") != nil {
			return
		}
		err := testutil.Poll(30*time.Second, func() error {
			_, err := f.cli("a", "rm", "everywhere")
			return err
		})
		if err != nil {
			t.Errorf("rm everywhere: %v", err)
		}
		f.waitNothingLeft(t, 30*time.Second, "a", "b")
	})
	onB := ""
	testutil.WaitFor(t, 60*time.Second, func() error {
		out, err := f.cli("a", "ps", "-o", "json")
		if err != nil {
			return err
		}
		var list []instance
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return err
		}
		running := 0
		for _, i := range list {
			if i.State == "running" {
				running++
			}
			if i.Node == "b" {
				onB = i.Instance
			}
		}
		if running != 2 || onB == "" {
			return fmt.Errorf("want an instance running on each node: %+v", list)
		}
		return nil
	})
	// Read through a while b is up: a passes the request on.
	testutil.WaitFor(t, 30*time.Second, func() error {
		out, err := f.cli("a", "logs", onB)
		if err == nil && out != "hello\n" {
			err = fmt.Errorf("logs %s: %q", onB, out)
		}
		return err
	})

	if err := f.lab.Kill9("b"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, target := range []string{onB, "everywhere"} {
		cmd := exec.CommandContext(ctx, f.bin, "--data-dir", f.dirs["a"], "logs", target)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
			t.Errorf("logs %s with b down: %v, want exit status 1", target, err)
		}
		want := fmt.Sprintf(`node b, which runs %s, is unreachable: its cluster port %s:7947 did not answer (connection refused: shoal is not running there); it is down or cut off (`+"`shoal nodes`"+` shows its state)`, onB, f.lab.IP("b"))
		if !strings.Contains(stderr.String(), want) || strings.Contains(stderr.String(), "dial tcp") {
			t.Errorf("logs %s with b down: stderr\n%s\nwant it to say\n%s", target, stderr.String(), want)
		}
		if target == "everywhere" && !strings.Contains(stdout.String(), "| hello") {
			t.Errorf("logs everywhere with b down: stdout %q, want a's instance's line", stdout.String())
		}
	}
}

// A write on a node whose data dir's disk is full is refused, saying so
// and naming the node and the data dir; nothing is applied, the node runs
// on, and once there is room again the write goes through.
func TestApplyOnFullDisk(t *testing.T) {
	t.Parallel()
	n := newNode(t, "full")
	// The data dir on a small file system of its own, filled up below.
	if err := syscall.Mount("tmpfs", n.dataDir, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.stop() // before the unmount: the node's files live there
		if err := syscall.Unmount(n.dataDir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", n.dataDir, err)
		}
	})
	n.start()
	fill := filepath.Join(n.dataDir, "fill")
	f, err := os.Create(fill)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	// An image no registry serves, on loopback: the test reaches no
	// network, and a pull fails at once.
	spec := n.writeFile("app.yaml", "name: web\nimage: 127.0.0.1:1/web:1\n")
	out, errOut, code := n.shoal("apply", "-f", spec)
	if code != 1 || out != "" {
		t.Errorf("apply on a full disk: exit %d, stdout %q, want 1 and nothing", code, out)
	}
	want := fmt.Sprintf("shoal: node full: no space left on the disk under its data dir %s (0.0 MiB free, a write needs 16.0 MiB): free some space there\n", n.dataDir)
	if errOut != want {
		t.Errorf("apply on a full disk: stderr\n%q\nwant\n%q", errOut, want)
	}
	if apps := n.must("ps", "-o", "json"); apps != "[]\n" {
		t.Errorf("ps after the refused apply: %s", apps)
	}

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	if out := n.must("apply", "-f", spec); !strings.Contains(out, "web") {
		t.Errorf("apply with room again: %q", out)
	}
	n.must("rm", "web")
}

// A state file whose format number cannot be read is refused by `shoal
// up` with one line naming the file and what to do, and left as it was:
// it was read as a new file and migrated over the state it held.
func TestUpRefusesUnreadableSchema(t *testing.T) {
	t.Parallel()
	n := newNode(t, "schema")
	n.start()
	n.stop()
	path := filepath.Join(n.dataDir, "state.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte{0, 2}) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)

	out, errOut, code := n.shoal(n.args[2:]...)
	want := fmt.Sprintf("shoal: state file %s is damaged: its meta/schema value is 2 bytes (0002), not a format number of 8, so its state format is unknown: "+
		"move it away (mv %s %s.damaged) and start again: shoal rebuilds it from the Raft log and snapshots in the same data dir\n", path, path, path)
	if code != 1 || out != "" || errOut != want {
		t.Errorf("up on the damaged state file: exit %d, stdout %q, stderr\n%q\nwant 1, nothing and\n%q", code, out, errOut, want)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the refused state file was written to")
	}
}

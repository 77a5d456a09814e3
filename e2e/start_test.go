package e2e

import (
	"bytes"
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

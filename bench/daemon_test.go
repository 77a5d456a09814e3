package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/api/client"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// daemon is one `shoal up` on loopback, started by a benchmark and stopped
// in its Cleanup.
type daemon struct {
	bin     string
	name    string
	dataDir string
	cmd     *exec.Cmd
	c       *client.Client
	done    chan struct{}

	mu  sync.Mutex // guards following
	log bytes.Buffer
}

func (d *daemon) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.Write(p)
}

// startDaemon bootstraps a one-node cluster named name in dataDir (a new
// temporary dir when empty) and waits for it to lead. Cleanup stops it with
// SIGTERM and fails the benchmark if it left mounts or cgroups behind.
func startDaemon(b *testing.B, name, dataDir string, upArgs ...string) *daemon {
	b.Helper()
	return startDaemonOf(b, shoalBin(b), name, dataDir, upArgs...)
}

// startDaemonOf is startDaemon with the binary bin.
func startDaemonOf(b *testing.B, bin, name, dataDir string, upArgs ...string) *daemon {
	b.Helper()
	testutil.RequireRoot(b)
	if dataDir == "" {
		dataDir = b.TempDir()
	}
	d := &daemon{bin: bin, name: name, dataDir: dataDir, done: make(chan struct{})}
	args := []string{"--data-dir", dataDir, "up", "--name", name, "--bind", "127.0.0.1",
		"--gossip-port", fmt.Sprint(testutil.FreePort(b)), "--port", fmt.Sprint(testutil.FreePort(b))}
	d.cmd = exec.Command(d.bin, append(args, upArgs...)...)
	d.cmd.Stdout, d.cmd.Stderr = d, d
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	b.Cleanup(func() {
		d.stop(b)
		if left := d.leftovers(); len(left) > 0 {
			b.Errorf("left behind after shoal up exited: %v", left)
		}
		if b.Failed() {
			d.mu.Lock()
			b.Logf("log of %s:\n%s", name, d.log.String())
			d.mu.Unlock()
		}
	})
	d.c = client.New(filepath.Join(dataDir, "shoal.sock"))
	err := testutil.Poll(15*time.Second, func() error {
		select {
		case <-d.done:
			return errors.New("shoal up exited")
		default:
		}
		st, err := d.c.Status(context.Background())
		if err != nil {
			return err
		}
		if st.Leader == "" || st.ClusterID == "" {
			return fmt.Errorf("no leader yet: %+v", st)
		}
		return nil
	})
	if err != nil {
		b.Fatalf("shoal up did not lead: %v", err)
	}
	return d
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// stop sends SIGTERM and waits for the daemon to stop its containers and exit.
func (d *daemon) stop(b *testing.B) {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
		b.Errorf("shoal up did not exit within 30s of SIGTERM")
	}
}

// leftovers lists mounts under the data dir and the node's cgroups.
func (d *daemon) leftovers() []string {
	var out []string
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(mi), "\n") {
			if strings.Contains(l, d.dataDir) {
				out = append(out, "mount: "+l)
			}
		}
	}
	for _, pattern := range []string{"/sys/fs/cgroup/shoal-" + d.name, "/sys/fs/cgroup/*/shoal-" + d.name} {
		m, _ := filepath.Glob(pattern)
		for _, p := range m {
			out = append(out, "cgroup: "+p)
		}
	}
	return out
}

func (d *daemon) importImage(b *testing.B, archive string) {
	b.Helper()
	f, err := os.Open(archive)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := d.c.ImportImage(context.Background(), f); err != nil {
		b.Fatalf("import %s: %v", archive, err)
	}
}

// apply creates an app and removes it in Cleanup (a no-op when the
// benchmark removed it already).
func (d *daemon) apply(b *testing.B, app api.App) {
	b.Helper()
	if _, err := d.c.Apply(context.Background(), []api.App{app}); err != nil {
		b.Fatalf("apply %s: %v", app.Name, err)
	}
	b.Cleanup(func() { d.c.Delete(context.Background(), []string{app.Name}) })
}

// remove deletes an app and waits until its instances and processes are gone.
func (d *daemon) remove(b *testing.B, app string, pids ...int) {
	b.Helper()
	if err := d.c.Delete(context.Background(), []string{app}); err != nil {
		b.Fatalf("rm %s: %v", app, err)
	}
	err := testutil.Poll(20*time.Second, func() error {
		ps, err := d.c.PS(context.Background(), app)
		if err != nil && !errors.Is(err, api.ErrNotFound) {
			return err
		}
		if len(ps) != 0 {
			return fmt.Errorf("ps still shows %d instances of %s", len(ps), app)
		}
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				return fmt.Errorf("process %d of %s still alive", pid, app)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// waitRunning polls ps until app has n running instances and returns them.
func (d *daemon) waitRunning(b *testing.B, app string, n int) []api.InstanceStatus {
	b.Helper()
	var got []api.InstanceStatus
	err := testutil.Poll(30*time.Second, func() error {
		ps, err := d.c.PS(context.Background(), app)
		if err != nil {
			return err
		}
		running := 0
		for _, in := range ps {
			if in.State == api.StateRunning && in.PID > 0 {
				running++
			}
		}
		if running != n || len(ps) != n {
			return fmt.Errorf("%d of %d instances of %s running: %+v", running, n, app, ps)
		}
		got = ps
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return got
}

// sleeper is a long-running busybox app. The image holds nothing but
// /bin/busybox, so applets are called through it. A plain sleep as PID 1
// would ignore SIGTERM (PID 1 has no default signal actions) and make every
// removal wait for the 10 s grace period, so a shell that exits on SIGTERM
// is PID 1 and the sleep its child.
func sleeper(name string, replicas int) api.App {
	return api.App{
		Name:     name,
		Image:    busyboxRef,
		Command:  []string{"/bin/busybox", "sh", "-c", "trap 'exit 0' TERM; /bin/busybox sleep 3600 & wait"},
		Replicas: replicas,
		Restart:  "always",
	}
}

const busyboxRef = "busybox:1"

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// TestHelpers builds the process tree a per-container monitor makes, with
// shells: daemon -> monitor (its command line carrying the marker) ->
// container, plus a container that is the daemon's direct child, and checks
// that helpers finds the monitor and nothing else.
func TestHelpers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	monitor := write("monitor.sh", "sleep 1000 & echo $! > "+dir+"/monitored.pid; wait\n")
	daemonScript := write("daemon.sh", "sh "+monitor+" "+monitorMarker+" &\nsleep 1000 & echo $! > "+dir+"/direct.pid; wait\n")
	daemon := exec.Command("sh", daemonScript)
	daemon.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-daemon.Process.Pid, syscall.SIGKILL)
		daemon.Wait()
	})
	var ctrs []int
	testutil.WaitFor(t, 10*time.Second, func() error {
		ctrs = ctrs[:0]
		for _, f := range []string{"monitored.pid", "direct.pid"} {
			data, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return err
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil {
				return fmt.Errorf("%s: %v", f, err)
			}
			ctrs = append(ctrs, pid)
		}
		return nil
	})
	got := helpers(daemon.Process.Pid, ctrs)
	if len(got) != 1 || !strings.Contains(got[0].Cmdline, monitorMarker) || got[0].PPID != daemon.Process.Pid {
		t.Fatalf("helpers = %+v, want the one monitor, a child of %d", got, daemon.Process.Pid)
	}
	if m, err := readMem(got[0].PID); err != nil || m.RSS <= 0 || m.PSS <= 0 {
		t.Errorf("readMem(monitor) = %+v, %v", m, err)
	}
	if got := helpers(daemon.Process.Pid, append(ctrs, got[0].PID)); len(got) != 0 {
		t.Errorf("with the monitor counted as a container, helpers = %+v, want none", got)
	}
}

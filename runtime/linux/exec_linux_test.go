package linux

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

func TestExec(t *testing.T) {
	rt, _ := newRuntime(t)
	t.Parallel()
	img := userImage(t)
	c, out := start(t, rt, Spec{Image: img, Hostname: "exec-box", Env: []string{"FOO=bar"}, Args: []string{"/app", "-sleep", "1h"}})
	testutil.WaitFor(t, 10*time.Second, func() error { return wantOutput(out, "ready") })
	ctx := context.Background()
	def, _ := capSet(nil, nil)

	execInfo := func(t *testing.T, p Process) info {
		t.Helper()
		var stdout bytes.Buffer
		p.Stdout, p.Stderr = &stdout, testutil.LogWriter(t)
		ex, err := rt.Exec(ctx, c, p)
		if err != nil || ex.Code != 0 {
			t.Fatalf("Exec = %+v, %v; output %q", ex, err, stdout.String())
		}
		return decodeInfo(t, stdout.String())
	}

	t.Run("namespaces and confinement", func(t *testing.T) {
		in := execInfo(t, Process{Args: []string{"/app", "-info"}})
		// Its own pid namespace view: the container's PID 1 and itself.
		if in.Pid == 1 || !slices.Contains(in.Procs, "1") || !slices.Contains(in.Procs, strconv.Itoa(in.Pid)) || len(in.Procs) != 2 {
			t.Errorf("pid %d sees %v, want the container's 1 and itself", in.Pid, in.Procs)
		}
		if in.Hostname != "exec-box" {
			t.Errorf("hostname %q", in.Hostname)
		}
		if !slices.Equal(in.Ifaces, []string{"lo"}) {
			t.Errorf("interfaces %v: not the container's network", in.Ifaces)
		}
		// In the container's cgroup namespace, at its root: the
		// container's group.
		for _, l := range strings.Split(in.Cgroup, "\n") {
			if !strings.HasSuffix(l, ":/") {
				t.Errorf("/proc/self/cgroup line %q: not in the container's group", l)
			}
		}
		if !slices.Equal(in.Env, []string{"FOO=bar", "HOME=/root"}) {
			t.Errorf("env %v", in.Env)
		}
		checkConfined(t, in, capHex(t, def))
		if !in.KeysMasked || !in.SysReadOnly {
			t.Errorf("mount namespace: /proc/keys masked %v, /sys read-only %v", in.KeysMasked, in.SysReadOnly)
		}
	})
	t.Run("user and cwd", func(t *testing.T) {
		in := execInfo(t, Process{Args: []string{"/app", "-info"}, User: "app", Cwd: "/tmp", Env: []string{"A=1"}})
		if in.Uid != 1000 || in.Gid != 1000 || !slices.Equal(in.Groups, []int{29, 44}) || in.Status["CapEff"] != "0000000000000000" {
			t.Errorf("uid %d gid %d groups %v caps %v", in.Uid, in.Gid, in.Groups, in.Status)
		}
		if in.Cwd != "/tmp" || !slices.Equal(in.Env, []string{"A=1", "HOME=/home/app"}) {
			t.Errorf("cwd %q env %v", in.Cwd, in.Env)
		}
	})
	t.Run("exit code and stdin", func(t *testing.T) {
		var stdout bytes.Buffer
		ex, err := rt.Exec(ctx, c, Process{Args: []string{"/app", "-cat", "-exit", "5"}, Stdin: strings.NewReader("piped\n"), Stdout: &stdout})
		if err != nil || ex.Code != 5 || stdout.String() != "piped\n" {
			t.Errorf("Exec = %+v, %v; stdout %q", ex, err, stdout.String())
		}
	})
	t.Run("tty", func(t *testing.T) {
		var stdout testutil.SyncBuffer
		resize := make(chan TermSize, 1)
		resize <- TermSize{Rows: 42, Cols: 120}
		ex, err := rt.Exec(ctx, c, Process{Args: []string{"/app", "-winsize", "-info"}, TTY: true, Stdout: &stdout, Resize: resize})
		if err != nil || ex.Code != 0 {
			t.Fatalf("Exec = %+v, %v; output %q", ex, err, stdout.String())
		}
		first, rest, _ := strings.Cut(stdout.String(), "\n")
		if strings.TrimSpace(first) != "winsize 42x120" {
			t.Errorf("first line %q, want the size sent on Resize", first)
		}
		in := decodeInfo(t, rest)
		if !in.IsTTY || !strings.HasPrefix(in.TTYName, "/dev/pts/") {
			t.Errorf("isatty %v, stdin %q: want a terminal of the container's /dev/pts", in.IsTTY, in.TTYName)
		}
	})
	t.Run("errors", func(t *testing.T) {
		ex, err := rt.Exec(ctx, c, Process{Args: []string{"/nope"}})
		if !errors.Is(err, fs.ErrNotExist) || ex.Code != 127 {
			t.Errorf("missing program: %+v, %v", ex, err)
		}
		if _, err := rt.Exec(ctx, c, Process{Args: []string{"/app"}, User: "nobody"}); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("unknown user: %v", err)
		}
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		ex, err = rt.Exec(cctx, c, Process{Args: []string{"/app", "-sleep", "1h"}})
		if !errors.Is(err, context.DeadlineExceeded) || ex.Signal != syscall.SIGKILL {
			t.Errorf("cancelled: %+v, %v", ex, err)
		}
	})
	// The container is unaffected (its PID 1's parent-death signal is
	// tied to a thread Exec borrowed); once it is gone, Exec says so.
	select {
	case <-c.Done():
		t.Fatalf("the container died during the execs: %+v", c.Wait())
	default:
	}
	if err := c.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.Wait()
	if _, err := rt.Exec(ctx, c, Process{Args: []string{"/app"}}); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("Exec after exit: %v", err)
	}
}

package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/api/client"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// fake answers for the node; only what the tests below need.
type fake struct {
	logPath string
	applied []api.App
}

func (f *fake) Status(context.Context) (api.ClusterStatus, error) {
	return api.ClusterStatus{Node: "n1", Leader: "n1"}, nil
}
func (f *fake) Nodes(context.Context) ([]api.Node, error)             { return nil, nil }
func (f *fake) Token(context.Context) (string, error)                 { return "shoal1/t", nil }
func (f *fake) RotateToken(context.Context) (string, error)           { return "shoal1/r", nil }
func (f *fake) Label(context.Context, string, api.LabelRequest) error { return nil }
func (f *fake) Cordon(context.Context, string, bool) (api.CordonResult, error) {
	return api.CordonResult{}, nil
}
func (f *fake) Leave(context.Context, api.LeaveRequest) (api.LeaveResult, error) {
	return api.LeaveResult{}, nil
}
func (f *fake) Forget(context.Context, string) error { return nil }
func (f *fake) Linearize(context.Context) error      { return nil }
func (f *fake) Scale(context.Context, map[string]int) ([]api.ApplyResult, error) {
	return nil, nil
}
func (f *fake) Backup(context.Context) ([]byte, error) { return []byte("backup"), nil }
func (f *fake) Restore(context.Context, io.Reader) (api.RestoreResult, error) {
	return api.RestoreResult{}, nil
}
func (f *fake) Apply(_ context.Context, apps []api.App) ([]api.ApplyResult, error) {
	f.applied = apps
	return nil, fmt.Errorf("%w (raft: leadership lost)", api.ErrNoLeader)
}
func (f *fake) Delete(_ context.Context, names []string) error {
	return fmt.Errorf("app %q: %w", names[0], api.ErrNotFound)
}
func (f *fake) PS(context.Context, string) ([]api.InstanceStatus, error) { return nil, nil }
func (f *fake) Where(context.Context, string, int) (string, http.RoundTripper, error) {
	return "", nil, nil
}
func (f *fake) LogPath(_ context.Context, app string, index int) (string, error) {
	return f.logPath, nil
}
func (f *fake) RunContainer(_ context.Context, req api.RunRequest, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	fmt.Fprint(stdout, "out:"+strings.Join(req.Command, " "))
	if stdin != nil {
		io.Copy(stdout, io.LimitReader(stdin, 1<<10))
	}
	fmt.Fprint(stderr, "err")
	return 7, nil
}
func (f *fake) ImportImage(context.Context, io.Reader) ([]api.Image, error) { return nil, nil }
func (f *fake) ListImages(context.Context) ([]api.Image, error)             { return nil, nil }
func (f *fake) PullImage(context.Context, api.PullRequest, func(int64, int64)) (api.Image, error) {
	return api.Image{}, errors.New("registry unreachable")
}
func (f *fake) RemoveImages(context.Context, []string) error { return api.ErrImageUsed }
func (f *fake) Exec(_ context.Context, req api.ExecRequest, stdin io.Reader, stdout, stderr io.Writer, _ <-chan api.TermSize) (int, error) {
	b, _ := io.ReadAll(stdin)
	fmt.Fprintf(stdout, "%s read %q", req.Command[0], b)
	return 3, nil
}

func serve(t *testing.T, f *fake) *client.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	s, err := New(Config{Socket: sock, Apps: f, Reads: f, Fleet: f, Tokens: f, Membership: f, Backups: f, Instances: f, Images: f, Exec: f})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		s.Close()
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
	})
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v, %v; want 0600", fi, err)
	}
	return client.New(sock)
}

// Errors keep their kind across the wire, so callers can branch on them.
func TestErrorsKeepTheirKind(t *testing.T) {
	c := serve(t, &fake{})
	ctx := context.Background()
	if _, err := c.Apply(ctx, []api.App{{Name: "a", Image: "x"}}); !errors.Is(err, api.ErrNoLeader) {
		t.Errorf("apply without a leader: %v, want ErrNoLeader", err)
	}
	if err := c.Delete(ctx, []string{"nope"}); !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("rm: %v, want ErrNotFound naming the app", err)
	}
	if err := c.RemoveImages(ctx, []string{"x:1"}); !errors.Is(err, api.ErrImageUsed) {
		t.Errorf("image rm: %v, want ErrImageUsed", err)
	}
	if _, err := c.PullImage(ctx, api.PullRequest{Ref: "x:1"}, nil); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("pull: %v", err)
	}
}

func TestRunStreamsOutputAndExitCode(t *testing.T) {
	c := serve(t, &fake{})
	var out, errb bytes.Buffer
	code, err := c.Run(context.Background(), api.RunRequest{Image: "x", Command: []string{"a", "b"}}, nil, &out, &errb)
	if err != nil || code != 7 || out.String() != "out:a b" || errb.String() != "err" {
		t.Fatalf("run = %d, %v, stdout %q, stderr %q", code, err, out.String(), errb.String())
	}
	out.Reset()
	code, err = c.Run(context.Background(), api.RunRequest{Image: "x", Command: []string{"a"}}, strings.NewReader(" in"), &out, io.Discard)
	if err != nil || code != 7 || out.String() != "out:a in" {
		t.Fatalf("run -i = %d, %v, stdout %q", code, err, out.String())
	}
}

func TestExecPassesStdin(t *testing.T) {
	c := serve(t, &fake{})
	var out bytes.Buffer
	code, err := c.Exec(context.Background(), api.ExecRequest{App: "a", Command: []string{"cat"}}, strings.NewReader("hello"), &out, io.Discard, nil)
	if err != nil || code != 3 || out.String() != `cat read "hello"` {
		t.Fatalf("exec = %d, %v, %q", code, err, out.String())
	}
}

func TestLogsTailAndFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	os.WriteFile(path, []byte("one\ntwo\nthree\n"), 0o600)
	c := serve(t, &fake{logPath: path})
	var out bytes.Buffer
	if err := c.Logs(context.Background(), "a", 0, client.LogOptions{Tail: 2}, &out); err != nil || out.String() != "two\nthree\n" {
		t.Fatalf("tail 2 = %q, %v", out.String(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	go func() { c.Logs(ctx, "a", 0, client.LogOptions{Follow: true, Tail: 0}, pw); pw.Close() }()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	defer f.Close()
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 64)
		n, _ := pr.Read(b)
		got <- string(b[:n])
	}()
	testutil.WaitFor(t, 5*time.Second, func() error {
		f.WriteString("four\n")
		select {
		case s := <-got:
			if !strings.Contains(s, "four") {
				return fmt.Errorf("followed %q", s)
			}
			return nil
		default:
			return errors.New("nothing followed yet")
		}
	})
}

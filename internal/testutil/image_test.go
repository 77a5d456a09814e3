package testutil

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/runtime/image"
)

// TestTestProgImage builds testprog into an image, imports it and runs the
// unpacked binary directly on the host, exercising its flags.
func TestTestProgImage(t *testing.T) {
	archive := TestProgImage(t, "testprog:1")
	s, err := image.New(image.Config{Root: filepath.Join(t.TempDir(), "images")})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := s.Import(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	dir, rc, err := s.Rootfs(context.Background(), "testprog:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.Entrypoint) != 1 || rc.Entrypoint[0] != "/app" {
		t.Fatalf("Entrypoint = %q", rc.Entrypoint)
	}
	app := filepath.Join(dir, "app")

	cmd := exec.Command(app, "-args", "-env", "-stdout", "out", "-stderr", "err", "-exit", "3")
	cmd.Env = []string{"GREETING=hi"}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("exit = %v, want code 3", err)
	}
	for _, want := range []string{"arg: -args", "env: GREETING=hi", "out\n"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout %q lacks %q", stdout.String(), want)
		}
	}
	if stderr.String() != "err\n" {
		t.Errorf("stderr = %q", stderr.String())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv := exec.Command(app, "-http", addr)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	WaitFor(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "hello" {
			t.Fatalf("GET / = %q", b)
		}
		return nil
	})
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	srv.Process.Signal(os.Interrupt)
	if err := srv.Wait(); err != nil {
		t.Errorf("testprog after SIGINT: %v", err)
	}
}

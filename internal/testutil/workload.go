package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// BuildWorkload compiles a one-file Go program (source is its main.go) into
// a fresh directory that serves as a minimal image rootfs, with the program
// at /app. It returns that directory, inside a temp dir the caller removes
// with cleanup. It takes no testing.TB so that TestMain can call it.
func BuildWorkload(source string) (imageDir string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "shoal-workload-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	src, imageDir := filepath.Join(dir, "src"), filepath.Join(dir, "image")
	for _, d := range []string{src, imageDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			cleanup()
			return "", nil, err
		}
	}
	files := map[string]string{"go.mod": "module workload\n\ngo 1.22\n", "main.go": source}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			cleanup()
			return "", nil, err
		}
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		gobin = p
	}
	cmd := exec.Command(gobin, "build", "-o", filepath.Join(imageDir, "app"), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("build workload: %v\n%s", err, out)
	}
	return imageDir, cleanup, nil
}

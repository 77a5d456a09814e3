package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/shoal-edge/shoal/internal/imagebuild"
)

// BuildTestImage builds the Go main package in pkgDir as a static binary
// (CGO_ENABLED=0, for the host's GOARCH), packs it as /app with Entrypoint
// ["/app"] into an image named ref, and returns the path of a docker-archive
// of it in t.TempDir(). The Go build cache keeps repeated builds cheap.
func BuildTestImage(t testing.TB, ref string, pkgDir string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "app")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("BuildTestImage %s: go build in %s: %v\n%s", ref, pkgDir, err, out)
	}
	archive := filepath.Join(dir, "image.tar")
	spec := imagebuild.Spec{
		Ref:        ref,
		Files:      []imagebuild.File{{Path: "/app", Mode: 0o755, Src: bin}},
		Entrypoint: []string{"/app"},
	}
	if err := imagebuild.WriteDockerArchive(archive, spec); err != nil {
		t.Fatalf("BuildTestImage %s: %v", ref, err)
	}
	return archive
}

// TestProgDir returns the directory of testprog, the small program for
// container tests (see its package comment for its flags).
func TestProgDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testprog")
}

// TestProgImage is BuildTestImage of testprog: a docker-archive of an image
// named ref whose entrypoint /app is testprog.
func TestProgImage(t testing.TB, ref string) string {
	t.Helper()
	return BuildTestImage(t, ref, TestProgDir())
}

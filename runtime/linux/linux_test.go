package linux

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestIsInit(t *testing.T) {
	if !IsInit([]string{"shoal", "__shoal_init", "id"}) || IsInit([]string{"shoal", "run"}) || IsInit([]string{"shoal"}) {
		t.Error("IsInit misjudges argv")
	}
}

func TestNormalize(t *testing.T) {
	s, err := Spec{ID: strings.Repeat("a", 100), Image: "/img", Args: []string{"x"}}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if s.Cwd != "/" || len(s.Hostname) != 63 {
		t.Errorf("defaults: cwd %q, hostname %q", s.Cwd, s.Hostname)
	}
	for _, bad := range []Spec{
		{ID: "", Image: "/img", Args: []string{"x"}},
		{ID: "../x", Image: "/img", Args: []string{"x"}},
		{ID: "a", Image: "img", Args: []string{"x"}},
		{ID: "a", Image: "/img"},
		{ID: "a", Image: "/img", Args: []string{"x"}, Cwd: "rel"},
	} {
		if _, err := bad.normalize(); err == nil {
			t.Errorf("normalize(%+v) accepted it", bad)
		}
	}
}

func TestPathOf(t *testing.T) {
	if got := pathOf([]string{"A=1"}); got != defaultPath {
		t.Errorf("pathOf without PATH = %q", got)
	}
	if got := pathOf([]string{"PATH=/a", "PATH=/b:/c"}); got != "/b:/c" {
		t.Errorf("pathOf = %q, want the last", got)
	}
}

type fakeFile struct {
	mode fs.FileMode
}

func (f fakeFile) Name() string       { return "" }
func (f fakeFile) Size() int64        { return 0 }
func (f fakeFile) Mode() fs.FileMode  { return f.mode }
func (f fakeFile) ModTime() time.Time { return time.Time{} }
func (f fakeFile) IsDir() bool        { return f.mode.IsDir() }
func (f fakeFile) Sys() any           { return nil }

func TestLookPath(t *testing.T) {
	files := map[string]fs.FileMode{
		"/usr/bin/app": 0o755,
		"/bin/data":    0o644,
		"/usr/bin/dir": fs.ModeDir | 0o755,
		"/sbin/data":   0o755,
	}
	stat := func(p string) (fs.FileInfo, error) {
		m, ok := files[p]
		if !ok {
			return nil, &os.PathError{Op: "stat", Path: p, Err: syscall.ENOENT}
		}
		return fakeFile{m}, nil
	}
	for _, tc := range []struct {
		file, path, want, err string
	}{
		{"app", "/bin:/usr/bin", "/usr/bin/app", ""},
		{"/usr/bin/app", "", "/usr/bin/app", ""},
		{"data", "/bin:/sbin", "/sbin/data", ""},
		{"data", "/bin", "", "permission denied"},
		{"nope", "/bin", "", `not found in PATH "/bin" in the container`},
		{"/nope", "", "", "exec /nope: no such file or directory in the container"},
		{"/usr/bin/dir", "", "", "is a directory"},
	} {
		got, err := lookPath(tc.file, tc.path, stat)
		if got != tc.want || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("lookPath(%q, %q) = %q, %v; want %q, %q", tc.file, tc.path, got, err, tc.want, tc.err)
		}
	}
	_, err := lookPath("nope", "/bin", stat)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("not found error %v is not fs.ErrNotExist", err)
	}
}

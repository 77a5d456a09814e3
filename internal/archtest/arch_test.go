package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/shoal-edge/shoal"

type pkg struct {
	ImportPath string
	Doc        string
	Deps       []string
	Imports    []string
	Name       string
}

func list(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "-deps=false", mod+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func deps(t *testing.T, path string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", path)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", path, err)
	}
	return strings.Fields(string(out))
}

func TestImportsPointDown(t *testing.T) {
	rules := []struct {
		from      string
		forbidden []string
		onlyStd   bool
	}{
		{from: "/api", onlyStd: true},
		{from: "/runtime", forbidden: []string{"/api", "/store", "/cluster", "/cmd", "/netfab"}},
		// The supervision loop decides and waits; it must not link the
		// runtimes whose processes it supervises (runtime/exit is
		// what they share).
		{from: "/runtime/supervise", forbidden: []string{"/runtime/linux", "/runtime/monitor"}},
		{from: "/netfab", forbidden: []string{"/api", "/store", "/cluster", "/cmd", "/runtime"}},
		{from: "/store", forbidden: []string{"/runtime", "/netfab", "/cluster", "/cmd"}},
		{from: "/cluster/sched", forbidden: []string{"/store", "/runtime", "/netfab", "/cmd", "/cluster/agent"}},
		{from: "/cluster", forbidden: []string{"/cmd"}},
	}
	for _, p := range list(t) {
		rel := strings.TrimPrefix(p.ImportPath, mod)
		for _, r := range rules {
			if rel != r.from && !strings.HasPrefix(rel, r.from+"/") {
				continue
			}
			for _, d := range deps(t, p.ImportPath) {
				if r.onlyStd && rel == r.from && d != p.ImportPath && strings.Contains(strings.Split(d, "/")[0], ".") {
					t.Errorf("%s imports %s: it may use the standard library only", p.ImportPath, d)
				}
				for _, f := range r.forbidden {
					if d == mod+f || strings.HasPrefix(d, mod+f+"/") {
						t.Errorf("%s imports %s", p.ImportPath, d)
					}
				}
			}
		}
	}
}

// The binary never links shoal's test helpers, and no shoal package in it
// imports "testing" (hashicorp/raft does, in its own testing.go; that is
// beyond our reach).
func TestBinaryDoesNotImportTestCode(t *testing.T) {
	for _, d := range deps(t, mod) {
		if strings.HasPrefix(d, mod+"/internal/testutil") || strings.HasPrefix(d, mod+"/internal/imagebuild") {
			t.Errorf("the shoal binary links %s", d)
		}
	}
	for _, p := range list(t) {
		if strings.HasPrefix(p.ImportPath, mod+"/internal/") || strings.HasPrefix(p.ImportPath, mod+"/examples/") {
			continue
		}
		for _, imp := range p.Imports {
			if imp == "testing" {
				t.Errorf("%s imports testing outside its tests", p.ImportPath)
			}
		}
	}
}

func TestEveryPackageHasADoc(t *testing.T) {
	for _, p := range list(t) {
		if p.Doc == "" {
			t.Errorf("%s has no package doc comment saying what it owns", p.ImportPath)
		}
	}
}

package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A spec with a YAML syntax error is refused before any node is asked,
// naming the line of the faulty token (yaml.v3 names the line above for
// most kinds of error).
func TestApplySyntaxErrorLine(t *testing.T) {
	dir := t.TempDir() // no node serves it: the spec must be refused first
	for _, tc := range []struct{ src, want string }{
		{"name: web\nimage: x\nresources:\n  memory: 32Mi\n cpu: 1\n", "web.yaml:5: YAML syntax: did not find expected key"},
		{"name: web\nimage: x\n- a\n", "web.yaml:3: YAML syntax: did not find expected key"},
		{"name: web\ncommand: [a, b\nimage: x\n", "web.yaml:2: YAML syntax: did not find expected ',' or ']': the [ opened on this line is not closed"},
		{"name: web\nimage: x\n\tports: 1\n", "web.yaml:3: YAML syntax: found a tab character that violates indentation"},
	} {
		spec := filepath.Join(dir, "web.yaml")
		if err := os.WriteFile(spec, []byte(tc.src), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		code := run([]string{"shoal", "--data-dir", dir, "apply", "-f", spec}, strings.NewReader(""), &out, &errb)
		want := "shoal: " + filepath.Join(dir, tc.want) + "\n"
		if code != 1 || out.Len() != 0 || errb.String() != want {
			t.Errorf("apply -f of\n%s: exit %d, stdout %q, stderr %q; want 1, nothing and %q", tc.src, code, out.String(), errb.String(), want)
		}
	}
}

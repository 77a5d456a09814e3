package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTail(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	var many strings.Builder
	for i := range 200 {
		fmt.Fprintf(&many, "line %d\n", i)
	}
	long := strings.Repeat("x", 100) + "\n"
	tests := []struct {
		name, content string
		want          []string // in the tail
		notWant       []string
	}{
		{"empty", "", []string{"(0 bytes):\n"}, nil},
		{"short", "a\nb", []string{"(3 bytes):\na\nb"}, nil},
		{"many lines", many.String(), []string{"last 80 lines:\nline 120\n", "line 199\n"}, []string{"line 119\n"}},
		{"many bytes", strings.Repeat(long, 400) + "end\n", []string{"last 80 lines", "end\n"}, nil},
		{"one huge line", strings.Repeat("y", 40<<10) + "\nend\n", []string{"last 1 lines:\nend\n"}, []string{"yyy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tail(write(tt.name, tt.content))
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("tail lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("tail has %q:\n%s", w, got)
				}
			}
			if len(got) > tailBytes+200 {
				t.Errorf("tail is %d bytes", len(got))
			}
		})
	}
	if got := tail(filepath.Join(dir, "missing")); !strings.Contains(got, "no such file") {
		t.Errorf("tail of a missing file = %q", got)
	}
}

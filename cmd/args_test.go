package cmd

import (
	"bytes"
	"strings"
	"testing"
)

// A flag after an argument is refused with a hint, not dropped: a script
// that asked for JSON must not get a table. What follows "--" (or a
// command without it) belongs to the container.
func TestFlagsAfterArguments(t *testing.T) {
	dir := t.TempDir() // no node serves it: a command that gets past the check says so
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ps", "web", "-o", "json"}, "flag -o after an argument: put flags before the arguments (shoal ps [FLAGS] [APP])"},
		{[]string{"logs", "web/0", "--tail", "5"}, "flag --tail after an argument"},
		{[]string{"image", "ls", "x", "-o", "json"}, "flag -o after an argument: put flags before the arguments (shoal image ls [FLAGS])"},
		{[]string{"exec", "web", "-i", "--", "cat"}, "flag -i after an argument"},
		{[]string{"exec", "web", "--", "ls", "-la"}, "no shoal node is serving"},
		{[]string{"exec", "web", "ls", "-la"}, "no shoal node is serving"},
		{[]string{"run", "busybox:1", "--", "sh", "-c", "true"}, "no shoal node is serving"},
		{[]string{"image", "ls", "-o", "json"}, "no shoal node is serving"},
		{[]string{"ps", "-o", "json", "web"}, "no shoal node is serving"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"shoal", "--data-dir", dir}, tc.args...), strings.NewReader(""), &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("shoal %s: exit %d, stderr %q; want 1 and %q", strings.Join(tc.args, " "), code, errb.String(), tc.want)
		}
	}
}

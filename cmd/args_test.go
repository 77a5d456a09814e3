package cmd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Flags go before or after a command's arguments; what follows "--", or a
// container command line given to exec or run, is never shoal's.
func TestInterspersed(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ps web -o json", "ps -o json web"},
		{"ps web -o=json", "ps -o=json web"},
		{"logs web/0 --tail 1", "logs --tail 1 web/0"},
		{"logs web/0 -f --tail 1", "logs -f --tail 1 web/0"},
		{"--data-dir /d ps web --data-dir /e", "--data-dir /d ps --data-dir /e web"},
		{"image ls x -o json", "image ls -o json x"},
		{"image --data-dir /d ls x -o json", "image --data-dir /d ls -o json x"},
		{"exec -it web -- sh", "exec -it web -- sh"},
		{"exec web -it -- sh", "exec -it web -- sh"},
		{"exec web -e K=V -- ls -l", "exec -e K=V web -- ls -l"},
		{"exec web -ie K=V -- ls -l", "exec -ie K=V web -- ls -l"},
		{"exec web ls -l", "exec web ls -l"},
		{"exec web -- ls -l --tail 1", "exec web -- ls -l --tail 1"},
		{"run busybox -i -- sh -c true", "run -i busybox -- sh -c true"},
		{"run busybox sh -i", "run busybox sh -i"},
		{"rm a -- -b", "rm a -- -b"},
		{"nosuch x -o json", "nosuch x -o json"},
		{"--version", "--version"},
		{"--data-dir", "--data-dir"},
	} {
		app := App()
		got, err := interspersed(app, append([]string{"shoal"}, strings.Fields(tc.in)...))
		if err != nil {
			t.Fatalf("shoal %s: %v", tc.in, err)
		}
		if diff := cmp.Diff(append([]string{"shoal"}, strings.Fields(tc.want)...), got); diff != "" {
			t.Errorf("shoal %s (-want +got):\n%s", tc.in, diff)
		}
	}
}

// A command line that does not fit is one line naming the command and its
// help, with exit status 2, and not the whole help text.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir() // no node serves it: a command that gets past parsing says so
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"ps", "-x"}, 2, "shoal: ps: flag provided but not defined: -x; see shoal ps --help\n"},
		{[]string{"image", "ls", "--bad"}, 2, "shoal: image ls: flag provided but not defined: -bad; see shoal image ls --help\n"},
		{[]string{"logs"}, 2, "shoal: logs: want one APP or APP/INDEX; see shoal logs --help\n"},
		{[]string{"ps", "web", "g"}, 2, "shoal: ps: want at most one APP; see shoal ps --help\n"},
		{[]string{"logs", "web", "--tail"}, 2, "shoal: logs: flag needs a value: --tail; see shoal logs --help\n"},
		{[]string{"nosuch"}, 2, "shoal: no command \"nosuch\"; see shoal --help\n"},
		{[]string{"ps", "web", "-o", "json"}, 1, "shoal: no shoal node is serving"},
		{[]string{"exec", "web", "--", "ls", "-la"}, 1, "shoal: no shoal node is serving"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"shoal", "--data-dir", dir}, tc.args...), strings.NewReader(""), &out, &errb)
		if code != tc.code || !strings.HasPrefix(errb.String(), tc.want) || out.Len() != 0 {
			t.Errorf("shoal %s: exit %d, stdout %q, stderr %q; want %d and %q", strings.Join(tc.args, " "), code, out.String(), errb.String(), tc.code, tc.want)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	var a, b, errb bytes.Buffer
	if code := run([]string{"shoal", "--version"}, nil, &a, &errb); code != 0 {
		t.Fatalf("--version: exit %d, stderr %q", code, errb.String())
	}
	run([]string{"shoal", "version"}, nil, &b, &errb)
	if a.String() != b.String() || !strings.HasPrefix(a.String(), "shoal ") {
		t.Errorf("--version printed %q, version %q", a.String(), b.String())
	}
}

package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// The join token comes from --join, SHOAL_JOIN, --join-file or
// SHOAL_JOIN_FILE; two sources at once, or an empty or missing file, are
// refused with a message naming them.
func TestJoinToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "join")
	os.WriteFile(file, []byte("  shoal1/from-file\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, tc := range []struct {
		args    []string
		env     map[string]string
		want    string
		wantErr string
	}{
		{args: []string{"--join", "shoal1/argv"}, want: "shoal1/argv"},
		{env: map[string]string{"SHOAL_JOIN": "shoal1/env"}, want: "shoal1/env"},
		{args: []string{"--join-file", file}, want: "shoal1/from-file"},
		{env: map[string]string{"SHOAL_JOIN_FILE": file}, want: "shoal1/from-file"},
		{},
		{args: []string{"--join-file", file}, env: map[string]string{"SHOAL_JOIN": "shoal1/env"}, wantErr: "both given"},
		{args: []string{"--join-file", empty}, wantErr: "is empty"},
		{args: []string{"--join-file", filepath.Join(dir, "missing")}, wantErr: "--join-file"},
	} {
		t.Setenv("SHOAL_JOIN", tc.env["SHOAL_JOIN"])
		t.Setenv("SHOAL_JOIN_FILE", tc.env["SHOAL_JOIN_FILE"])
		app := App()
		var got string
		var gotErr error
		for _, c := range app.Commands {
			if c.Name == "up" {
				c.Action = func(c *cli.Context) error { got, gotErr = joinToken(c); return nil }
			}
		}
		if err := app.Run(append([]string{"shoal", "up"}, tc.args...)); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		switch {
		case tc.wantErr != "":
			if gotErr == nil || !strings.Contains(gotErr.Error(), tc.wantErr) {
				t.Errorf("%v %v: error %v, want one saying %q", tc.args, tc.env, gotErr, tc.wantErr)
			}
		case gotErr != nil || got != tc.want:
			t.Errorf("%v %v: %q, %v; want %q", tc.args, tc.env, got, gotErr, tc.want)
		}
	}
}

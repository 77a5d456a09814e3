package cmd

import (
	"testing"

	"github.com/urfave/cli/v2"
)

// --data-dir is honoured before or after the command and from the
// environment, as the spec promises for every command.
func TestDataDirAnywhere(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"shoal", "status"}, "", "/var/lib/shoal"},
		{[]string{"shoal", "--data-dir", "/a", "status"}, "", "/a"},
		{[]string{"shoal", "status", "--data-dir", "/b"}, "", "/b"},
		{[]string{"shoal", "image", "ls", "--data-dir", "/c"}, "", "/c"},
		{[]string{"shoal", "status"}, "/env", "/env"},
	} {
		t.Setenv("SHOAL_DATA_DIR", tc.env)
		if tc.env == "" {
			t.Setenv("SHOAL_DATA_DIR", "")
		}
		app := App()
		got := ""
		capture := func(c *cli.Context) error { got = dataDir(c); return nil }
		for _, c := range app.Commands {
			c.Action = capture
			for _, sc := range c.Subcommands {
				sc.Action = capture
			}
		}
		if err := app.Run(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got != tc.want {
			t.Errorf("%v (env %q): data dir %q, want %q", tc.args, tc.env, got, tc.want)
		}
	}
}

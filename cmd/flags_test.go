package cmd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
)

// A flag value the command cannot honour is refused before anything is
// asked of a node, as one usage line with status 2: never taken in part,
// changed behind the user's back or dropped.
func TestFlagValuesRefused(t *testing.T) {
	// No node: a check that came too late would say so. --voters 2 makes
	// an up that missed its check fail rather than start a node.
	dir := t.TempDir()
	for _, tc := range []struct{ args, want string }{
		{"run --rm=false busybox:1", "shoal: run: --rm=false: a one-off container is always removed when it exits, for now; see shoal run --help"},
		{"run --name Bad_Name busybox:1", `shoal: run: --name "Bad_Name": want a host name of lower-case letters, digits and '-', at most 63; see shoal run --help`},
		{"run -e NOEQ busybox:1", `shoal: run: -e "NOEQ": want K=V; see shoal run --help`},
		{"exec -e =v web -- ls", `shoal: exec: -e "=v": want K=V; see shoal exec --help`},
		{"logs web --tail -7", "shoal: logs: --tail -7: want a count of lines, or -1 for all; see shoal logs --help"},
		{"up --voters 2 --label a=b --label a=c", "shoal: up: --label a given twice; see shoal up --help"},
		{"ps -o yaml", `shoal: ps: unknown output format "yaml": use table or json; see shoal ps --help`},
		{"image ls -o yaml", `shoal: image ls: unknown output format "yaml": use table or json; see shoal image ls --help`},
		{"logs web --since soon", `shoal: logs: --since "soon": want a duration (10m, 2h) or a time (2006-01-02T15:04:05Z07:00, 2006-01-02T15:04:05, 2006-01-02); see shoal logs --help`},
		{"scale web=x", `shoal: scale: "web=x": want APP=N with N a count of replicas (0 or more); see shoal scale --help`},
		{"label n1 bad", `shoal: label: "bad": want key=value to set or key- to remove; see shoal label --help`},
		{"image pull --creds nocolon x:1", "shoal: image pull: --creds: want USER:PASSWORD; see shoal image pull --help"},
		{"snapshot save", "shoal: snapshot save: want one FILE; see shoal snapshot save --help"},
		{"up --voters 2 --log-level loud", `shoal: up: --log-level "loud": want debug, info, warn or error; see shoal up --help`},
		{"up --voters 2 --image-max-unpacked lots", `shoal: up: --image-max-unpacked: invalid size "lots" (want e.g. 64Mi, 1Gi, 500M); see shoal up --help`},
		{"apply", "shoal: apply: missing -f FILE (the app spec file, - for stdin); see shoal apply --help"},
		{"--server 127.0.0.1:1 nodes", "shoal: nodes: --server needs --credential (or SHOAL_CREDENTIAL): the admin credential, which the bootstrap node keeps in DATA/tls/admin.credential; see shoal nodes --help"},
		{"up --voters 2 --label nokv", `shoal: up: --label "nokv": want key=value; see shoal up --help`},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"shoal", "--data-dir", dir}, strings.Fields(tc.args)...), strings.NewReader(""), &stdout, &stderr)
		if code != 2 || stderr.String() != tc.want+"\n" || stdout.Len() > 0 {
			t.Errorf("shoal %s: status %d, stdout %q, stderr %q; want status 2 and stderr %q", tc.args, code, stdout.String(), stderr.String(), tc.want)
		}
	}
}

// -e takes its value whole: a comma is part of it, not a separator.
func TestRepeatedFlagKeepsCommas(t *testing.T) {
	for _, args := range [][]string{
		{"shoal", "run", "-e", "A=x,y", "-e", "B=1", "busybox:1"},
		{"shoal", "exec", "-e", "A=x,y", "-e", "B=1", "web", "--", "env"},
	} {
		app := App()
		var got []string
		for _, c := range app.Commands {
			c.Action = func(c *cli.Context) error { got = c.StringSlice("env"); return nil }
		}
		if err := app.Run(args); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]string{"A=x,y", "B=1"}, got); d != "" {
			t.Errorf("%v: env (-want +got):\n%s", args, d)
		}
	}
}

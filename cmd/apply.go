package cmd

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/api/appfile"
	"github.com/urfave/cli/v2"
)

func applyCommand() *cli.Command {
	return &cli.Command{
		Name:      "apply",
		Usage:     "create or update the apps of a (multi-document) YAML file",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "app spec file, - for stdin (required)"},
		},
		Action: func(c *cli.Context) error {
			name := c.String("file")
			if name == "" {
				return usage(c, "missing -f FILE (the app spec file, - for stdin)")
			}
			var r io.Reader = c.App.Reader
			if name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			} else {
				name = "<stdin>"
			}
			apps, err := appfile.Parse(name, r)
			if err != nil {
				return err
			}
			res, err := apiClient(c).Apply(c.Context, apps)
			if err != nil {
				return err
			}
			printResults(c, res, "applied")
			return nil
		},
	}
}

func printResults(c *cli.Context, res []api.ApplyResult, changed string) {
	for _, r := range res {
		what := "unchanged"
		if r.Changed {
			what = changed
		}
		fmt.Fprintf(c.App.Writer, "app %s %s (version %d)\n", r.Name, what, r.Version)
	}
	// The desired state is recorded, so the command succeeds; but an
	// operator must not walk away believing the app runs.
	for _, r := range res {
		if r.Unplaced != "" {
			warnUnplaced(c, r.Name, r.Unplaced)
		}
	}
}

func scaleCommand() *cli.Command {
	return &cli.Command{
		Name:      "scale",
		Usage:     "change the replica count of replicated apps",
		ArgsUsage: "APP=N...",
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usage(c, "want APP=N...")
			}
			replicas := map[string]int{}
			for _, a := range c.Args().Slice() {
				app, n, ok := strings.Cut(a, "=")
				v, err := strconv.Atoi(n)
				if !ok || app == "" || err != nil || v < 0 {
					return usage(c, "%q: want APP=N with N a count of replicas (0 or more)", a)
				}
				replicas[app] = v
			}
			res, err := apiClient(c).Scale(c.Context, replicas)
			if err != nil {
				return err
			}
			printResults(c, res, "scaled")
			return nil
		},
	}
}

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "delete apps; their containers stop everywhere",
		ArgsUsage: "APP...",
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usage(c, "name at least one app")
			}
			if err := apiClient(c).Delete(c.Context, c.Args().Slice()); err != nil {
				return err
			}
			for _, n := range c.Args().Slice() {
				fmt.Fprintf(c.App.Writer, "app %s removed\n", n)
			}
			return nil
		},
	}
}

package cmd

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/shoal-edge/shoal/api"
	"github.com/urfave/cli/v2"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "a one-off container on this node, outside scheduling; exits with the container's exit code",
		ArgsUsage: "IMAGE [-- CMD...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "pass stdin to the container"},
			&cli.BoolFlag{Name: "rm", Usage: "remove the container when it exits (always the case for now)", Value: true},
			&cli.StringFlag{Name: "name", Usage: "container name (host name inside it)"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "environment variable K=V (repeatable)"},
			&cli.StringFlag{Name: "network", Usage: "bridge (own network namespace) or host", Value: "bridge"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usage(c, "name an image")
			}
			if !c.Bool("rm") {
				return usage(c, "--rm=false: a one-off container is always removed when it exits, for now")
			}
			if n := c.String("name"); n != "" && !api.ValidName(n) {
				return usage(c, "--name %q: want a host name of lower-case letters, digits and '-', at most 63", n)
			}
			if err := checkEnv(c); err != nil {
				return err
			}
			req := api.RunRequest{
				Image:   c.Args().First(),
				Name:    c.String("name"),
				Command: command(c.Args().Tail()),
				Env:     c.StringSlice("env"),
				Network: api.Network(c.String("network")),
				Remove:  true,
			}
			// Ctrl-C ends the request; the node then stops the container.
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var stdin io.Reader
			if c.Bool("interactive") {
				stdin = c.App.Reader
			}
			code, err := apiClient(c).Run(ctx, req, stdin, c.App.Writer, c.App.ErrWriter)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
}

// checkEnv refuses an -e without '=': the container would get the bare
// word as an entry of its environment, which no program reads as a variable.
func checkEnv(c *cli.Context) error {
	for _, e := range c.StringSlice("env") {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return usage(c, "-e %q: want K=V", e)
		}
	}
	return nil
}

// command drops the "--" that separates shoal's flags from the container's
// command; urfave/cli passes it through once flags have ended.
func command(args []string) []string {
	if len(args) > 0 && args[0] == "--" {
		return args[1:]
	}
	return args
}

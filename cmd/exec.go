package cmd

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/shoal-edge/shoal/api"
	"github.com/urfave/cli/v2"
)

func execCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a command inside a running instance; exits with the command's exit code",
		ArgsUsage: "APP[/INDEX] -- CMD...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "pass stdin to the command"},
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "give the command a terminal"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "environment variable K=V (repeatable)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() < 2 {
				return usage(c, "want APP[/INDEX] -- CMD...")
			}
			app, index, err := parseInstance(c.Args().First())
			if err != nil {
				return err
			}
			if err := checkEnv(c); err != nil {
				return err
			}
			req := api.ExecRequest{App: app, Index: index, Command: command(c.Args().Tail()), Env: c.StringSlice("env"), TTY: c.Bool("tty")}
			if len(req.Command) == 0 {
				return usage(c, "no command after --")
			}
			var stdin io.Reader
			if c.Bool("interactive") {
				stdin = c.App.Reader
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
			defer stop()
			var resize chan api.TermSize
			if req.TTY {
				req.Env = withTerm(req.Env, os.Getenv("TERM"))
				r, restore, err := attachTerminal(&req)
				if err != nil {
					return err
				}
				defer restore()
				resize = r
			}
			code, err := apiClient(c).Exec(ctx, req, stdin, c.App.Writer, c.App.ErrWriter, resize)
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

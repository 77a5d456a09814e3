package cmd

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "container output of an instance",
		ArgsUsage: "APP[/INDEX]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new output"},
			&cli.IntFlag{Name: "tail", Usage: "only the last N lines (-1: all)", Value: -1},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usage(c, "want one APP or APP/INDEX")
			}
			app, index, err := parseInstance(c.Args().First())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return apiClient(c).Logs(ctx, app, index, c.Bool("follow"), c.Int("tail"), c.App.Writer)
		},
	}
}

func parseInstance(s string) (string, int, error) {
	app, idx, ok := strings.Cut(s, "/")
	if !ok {
		return app, 0, nil
	}
	n, err := strconv.Atoi(idx)
	if err != nil || n < 0 {
		return "", 0, fmt.Errorf("%q: the instance index after / must be a number", s)
	}
	return app, n, nil
}

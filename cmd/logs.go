package cmd

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/shoal-edge/shoal/api/client"

	"github.com/urfave/cli/v2"
)

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "container output of every instance of an app (each line prefixed with its instance), or of one instance",
		ArgsUsage: "APP[/INDEX]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new output"},
			&cli.IntFlag{Name: "tail", Usage: "only the last N lines of each instance (-1: all)", Value: -1},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("logs: want one APP or APP/INDEX")
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if !strings.Contains(c.Args().First(), "/") {
				opts := client.LogOptions{Follow: c.Bool("follow"), Tail: c.Int("tail")}
				cut, err := apiClient(c).AppLogs(ctx, c.Args().First(), opts, c.App.Writer)
				if cut > 0 {
					fmt.Fprintf(c.App.ErrWriter, "logs: %d lines longer than %d bytes were cut\n", cut, client.MaxLogLine)
				}
				return err
			}
			app, index, err := parseInstance(c.Args().First())
			if err != nil {
				return err
			}
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

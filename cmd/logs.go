package cmd

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

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
			&cli.BoolFlag{Name: "timestamps", Aliases: []string{"t"}, Usage: "start each line with the time it was written"},
			&cli.StringFlag{Name: "since", Usage: "only lines written since DURATION ago (10m) or TIME (RFC 3339, or 2006-01-02T15:04:05 local)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usage(c, "want one APP or APP/INDEX")
			}
			if t := c.Int("tail"); t < -1 {
				return usage(c, "--tail %d: want a count of lines, or -1 for all", t)
			}
			opts := client.LogOptions{Follow: c.Bool("follow"), Tail: c.Int("tail"), Timestamps: c.Bool("timestamps")}
			if s := c.String("since"); s != "" {
				t, err := parseSince(s, time.Now())
				if err != nil {
					return usage(c, "%v", err)
				}
				opts.Since = t
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if !strings.Contains(c.Args().First(), "/") {
				cut, err := apiClient(c).AppLogs(ctx, c.Args().First(), opts, c.App.Writer, c.App.ErrWriter)
				if cut > 0 {
					fmt.Fprintf(c.App.ErrWriter, "logs: %d lines longer than %d bytes were cut\n", cut, client.MaxLogLine)
				}
				return err
			}
			app, index, err := parseInstance(c.Args().First())
			if err != nil {
				return err
			}
			return apiClient(c).Logs(ctx, app, index, opts, c.App.Writer)
		},
	}
}

// parseSince reads --since: a duration back from now, or a time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %s: want a duration back from now, without a sign", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration (10m, 2h) or a time (2006-01-02T15:04:05Z07:00, 2006-01-02T15:04:05, 2006-01-02)", s)
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

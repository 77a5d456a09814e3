package cmd

import (
	"fmt"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/urfave/cli/v2"
)

func psCommand() *cli.Command {
	return &cli.Command{
		Name:      "ps",
		Usage:     "instances: app, instance, node, state, restarts, age, IP",
		ArgsUsage: "[APP]",
		Flags:     []cli.Flag{outputFlag()}, Before: checkOutput,
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usage(c, "want at most one APP")
			}
			st, err := apiClient(c).PS(c.Context, c.Args().First())
			if err != nil {
				return err
			}
			now := time.Now()
			table := false
			err = show(c, st, []string{"APP", "INSTANCE", "NODE", "STATE", "RESTARTS", "AGE", "IP", "PID"}, func() [][]string {
				table = true
				var rows [][]string
				for _, s := range st {
					state := string(s.State)
					// A failed instance that never ran has no exit code to show.
					if s.State == api.StateExited || (s.State == api.StateFailed && (s.ExitCode != 0 || s.Error == "")) {
						state = fmt.Sprintf("%s (%d)", s.State, s.ExitCode)
					}
					if s.OOMKilled {
						state += " oom"
					}
					pid := "-"
					if s.PID > 0 {
						pid = fmt.Sprint(s.PID)
					}
					rows = append(rows, []string{s.App, s.Instance, dash(s.Node), state, fmt.Sprint(s.Restarts), age(s.StartedAt, now), dash(s.IP), pid})
				}
				return rows
			})
			if err != nil || !table {
				return err
			}
			// Why an instance does not run (a refused host path, a failed
			// pull) is too long for a column: one line each, on stderr, so
			// that the table on stdout stays a table.
			for _, s := range st {
				if s.Error != "" {
					fmt.Fprintf(c.App.ErrWriter, "%s: %s\n", s.Instance, s.Error)
				}
			}
			return nil
		},
	}
}

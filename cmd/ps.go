package cmd

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
)

func psCommand() *cli.Command {
	return &cli.Command{
		Name:      "ps",
		Usage:     "instances: app, instance, node, state, restarts, age, IP",
		ArgsUsage: "[APP]",
		Flags:     []cli.Flag{outputFlag()},
		Action: func(c *cli.Context) error {
			st, err := apiClient(c).PS(c.Context, c.Args().First())
			if err != nil {
				return err
			}
			now := time.Now()
			return show(c, st, []string{"APP", "INSTANCE", "NODE", "STATE", "RESTARTS", "AGE", "IP", "PID"}, func() [][]string {
				var rows [][]string
				for _, s := range st {
					state := s.State
					if s.State == "exited" || s.State == "failed" {
						state = fmt.Sprintf("%s (%d)", s.State, s.ExitCode)
					}
					if s.OOMKilled {
						state += " oom"
					}
					pid := "-"
					if s.PID > 0 {
						pid = fmt.Sprint(s.PID)
					}
					rows = append(rows, []string{s.App, s.Instance, s.Node, state, fmt.Sprint(s.Restarts), age(s.StartedAt, now), dash(s.IP), pid})
				}
				return rows
			})
		},
	}
}

package cmd

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "cluster id, leader, this node's role, Raft term and index, voters, health",
		Flags: []cli.Flag{outputFlag()}, Before: checkOutput,
		Action: func(c *cli.Context) error {
			st, err := apiClient(c).Status(c.Context)
			if err != nil {
				return err
			}
			return show(c, st, []string{"FIELD", "VALUE"}, func() [][]string {
				return [][]string{
					{"cluster", dash(st.ClusterID)},
					{"node", st.Node},
					{"role", string(st.Role) + " (" + strings.ToLower(st.State) + ")"},
					{"leader", dash(st.Leader)},
					{"term", fmt.Sprint(st.Term)},
					{"commit index", fmt.Sprint(st.CommitIndex)},
					{"voters", strings.Join(st.Voters, ",")},
					{"stale", fmt.Sprint(st.Stale)},
					{"health", st.Health},
				}
			})
		},
	}
}

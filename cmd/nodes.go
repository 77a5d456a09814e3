package cmd

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
)

func nodesCommand() *cli.Command {
	return &cli.Command{
		Name:  "nodes",
		Usage: "the cluster's nodes: address, arch, role, state, labels, instances",
		Flags: []cli.Flag{outputFlag(), consistentFlag()}, Before: checkOutput,
		Action: func(c *cli.Context) error {
			ns, err := apiClient(c).Nodes(c.Context, c.Bool("consistent"))
			if err != nil {
				return err
			}
			return show(c, ns, []string{"NAME", "ADDRESS", "ARCH", "ROLE", "STATE", "LABELS", "INSTANCES", "LAST SEEN"}, func() [][]string {
				var rows [][]string
				for _, n := range ns {
					state := string(n.State)
					if n.Cordoned {
						state += ",cordoned"
					}
					rows = append(rows, []string{n.Name, dash(n.Address), n.Arch, string(n.Role), state, labels(n.Labels), fmt.Sprint(n.Instances), lastSeen(n.LastSeen)})
				}
				return rows
			})
		},
	}
}

// consistentFlag asks for a linearizable read: through the leader's read
// index, failing without a leader.
func consistentFlag() *cli.BoolFlag {
	return &cli.BoolFlag{Name: "consistent", Usage: "answer only with every acknowledged write (needs a leader)"}
}

func lastSeen(t *time.Time) string {
	switch {
	case t == nil:
		return "-"
	case time.Since(*t) < 2*time.Second:
		return "now"
	}
	return time.Since(*t).Round(time.Second).String() + " ago"
}

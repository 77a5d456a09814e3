package cmd

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func nodesCommand() *cli.Command {
	return &cli.Command{
		Name:  "nodes",
		Usage: "the cluster's nodes: address, arch, role, state, labels, instances",
		Flags: []cli.Flag{outputFlag()},
		Action: func(c *cli.Context) error {
			ns, err := apiClient(c).Nodes(c.Context)
			if err != nil {
				return err
			}
			return show(c, ns, []string{"NAME", "ADDRESS", "ARCH", "ROLE", "STATE", "LABELS", "INSTANCES"}, func() [][]string {
				var rows [][]string
				for _, n := range ns {
					state := n.State
					if n.Cordoned {
						state += ",cordoned"
					}
					rows = append(rows, []string{n.Name, dash(n.Address), n.Arch, n.Role, state, labels(n.Labels), fmt.Sprint(n.Instances)})
				}
				return rows
			})
		},
	}
}

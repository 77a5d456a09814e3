package cmd

import (
	"errors"
	"fmt"

	"github.com/shoal-edge/shoal/cluster"
	"github.com/urfave/cli/v2"
)

func recoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "recover",
		Usage: "after quorum loss: make this (stopped) node its cluster's only voter; the others rejoin when they return",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "yes, really: entries the lost majority never acknowledged count as committed"},
		},
		Action: func(c *cli.Context) error {
			if !c.Bool("force") {
				return errors.New("recover rewrites this node's Raft configuration and cannot be undone: " +
					"use it only when a majority of the voters is lost for good, with this node stopped, then run it again with --force")
			}
			name, err := cluster.Recover(dataDir(c), nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "recovered: %s is its cluster's only voter. Start it with `shoal up`; the other nodes rejoin as they come back.\n", name)
			return nil
		},
	}
}

package cmd

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "print the command that joins a new node to this cluster (on a voter)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "rotate", Usage: "make a new join secret first: earlier tokens admit no node afterwards (joined nodes stay)"},
		},
		Action: func(c *cli.Context) error {
			get := apiClient(c).Token
			if c.Bool("rotate") {
				get = apiClient(c).RotateToken
			}
			tok, err := get(c.Context)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, joinCommand(tok))
			return nil
		},
	}
}

// joinCommand is how a new node joins with tok: through the environment,
// never the command line, which every user of the machine can read.
func joinCommand(tok string) string { return "SHOAL_JOIN=" + tok + " shoal up" }

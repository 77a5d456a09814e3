package cmd

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "print the command that joins a new node to this cluster",
		Action: func(c *cli.Context) error {
			tok, err := apiClient(c).Token(c.Context)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "shoal up --join %s\n", tok)
			return nil
		},
	}
}

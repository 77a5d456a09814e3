package cmd

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

func imageCommand() *cli.Command {
	return &cli.Command{
		Name:  "image",
		Usage: "manage the node's images",
		Subcommands: []*cli.Command{
			{
				Name:      "import",
				Usage:     "load a docker-archive or OCI-layout tarball (plain or gzip)",
				ArgsUsage: "FILE",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("image import: want one FILE")
					}
					f, err := os.Open(c.Args().First())
					if err != nil {
						return err
					}
					defer f.Close()
					imgs, err := apiClient(c).ImportImage(c.Context, f)
					if err != nil {
						return fmt.Errorf("import %s: %w", c.Args().First(), err)
					}
					for _, im := range imgs {
						fmt.Fprintf(c.App.Writer, "imported %s (%s)\n", im.Ref, im.Digest)
					}
					return nil
				},
			},
			{
				Name:  "ls",
				Usage: "list images",
				Flags: []cli.Flag{outputFlag},
				Action: func(c *cli.Context) error {
					imgs, err := apiClient(c).Images(c.Context)
					if err != nil {
						return err
					}
					return show(c, imgs, []string{"REF", "DIGEST", "SIZE", "PLATFORM"}, func() [][]string {
						var rows [][]string
						for _, im := range imgs {
							d := im.Digest
							if len(d) > 19 {
								d = d[:19]
							}
							rows = append(rows, []string{im.Ref, d, size(im.Size), im.Platform})
						}
						return rows
					})
				},
			},
		},
	}
}

package cmd

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
)

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "back up and restore the cluster's desired state (apps, node labels)",
		Subcommands: []*cli.Command{
			{
				Name:      "save",
				Usage:     "write a backup of the desired state to FILE",
				ArgsUsage: "FILE",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usage(c, "want one FILE")
					}
					var buf bytes.Buffer
					if err := apiClient(c).SaveSnapshot(c.Context, &buf); err != nil {
						return err
					}
					path := c.Args().First()
					// Written whole or not at all: a backup cut short is
					// worse than none.
					tmp, err := os.CreateTemp(filepath.Dir(path), ".shoal-snapshot-*")
					if err != nil {
						return err
					}
					defer os.Remove(tmp.Name())
					if _, err := tmp.Write(buf.Bytes()); err != nil {
						tmp.Close()
						return err
					}
					if err := tmp.Sync(); err != nil {
						tmp.Close()
						return err
					}
					if err := tmp.Close(); err != nil {
						return err
					}
					if err := os.Rename(tmp.Name(), path); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "saved %s (%d bytes)\n", path, buf.Len())
					return nil
				},
			},
			{
				Name:      "restore",
				Usage:     "bring a backup's apps and node labels into a freshly bootstrapped cluster",
				ArgsUsage: "FILE",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usage(c, "want one FILE")
					}
					f, err := os.Open(c.Args().First())
					if err != nil {
						return err
					}
					defer f.Close()
					res, err := apiClient(c).RestoreSnapshot(c.Context, f)
					if err != nil {
						return fmt.Errorf("%s: %w", c.Args().First(), err)
					}
					fmt.Fprintf(c.App.Writer, "restored %d apps and the settings of %d nodes from cluster %s\n", res.Apps, res.Nodes, res.ClusterID)
					return nil
				},
			},
		},
	}
}

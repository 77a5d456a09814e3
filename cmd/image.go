package cmd

import (
	"fmt"
	"os"
	"strings"

	"github.com/shoal-edge/shoal/api"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
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
						return usage(c, "want one FILE")
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
				Name:      "pull",
				Usage:     "pull an image from a registry into this node's store",
				ArgsUsage: "REF",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "insecure", Usage: "plain HTTP / unverified TLS for this registry (automatic for loopback registries)"},
					&cli.StringFlag{Name: "creds", Usage: "USER:PASSWORD for the registry (default: the node's docker config.json)"},
				},
				Action: pullImage,
			},
			{
				Name:      "rm",
				Usage:     "remove images no app on this node uses (all of them or none)",
				ArgsUsage: "REF...",
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return usage(c, "name at least one image")
					}
					refs := c.Args().Slice()
					if err := apiClient(c).RemoveImages(c.Context, refs); err != nil {
						return fmt.Errorf("image rm: %w", err)
					}
					for _, ref := range refs {
						fmt.Fprintf(c.App.Writer, "removed %s\n", ref)
					}
					return nil
				},
			},
			{
				Name:  "ls",
				Usage: "list images",
				Flags: []cli.Flag{outputFlag()}, Before: checkOutput,
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

func pullImage(c *cli.Context) error {
	if c.NArg() != 1 {
		return usage(c, "want one REF")
	}
	req := api.PullRequest{Ref: c.Args().First(), Insecure: c.Bool("insecure")}
	if creds := c.String("creds"); creds != "" {
		u, p, ok := strings.Cut(creds, ":")
		if !ok {
			return usage(c, "--creds: want USER:PASSWORD")
		}
		req.Username, req.Password = u, p
	}
	var progress func(done, total int64)
	tty := false
	if f, ok := c.App.ErrWriter.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
		progress = func(done, total int64) { fmt.Fprintf(c.App.ErrWriter, "\r%s", bar(done, total)) }
	}
	img, err := apiClient(c).PullImage(c.Context, req, progress)
	if tty {
		fmt.Fprintln(c.App.ErrWriter)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "pulled %s (%s, %s)\n", img.Ref, img.Digest, img.Platform)
	return nil
}

// bar draws a 30-column progress bar.
func bar(done, total int64) string {
	if total <= 0 {
		return size(done)
	}
	n := int(30 * done / total)
	n = min(max(n, 0), 30)
	return fmt.Sprintf("[%s%s] %s / %s", strings.Repeat("=", n), strings.Repeat(" ", 30-n), size(done), size(total))
}

package cmd

import (
	"fmt"
	"strings"

	"github.com/shoal-edge/shoal/api"
	"github.com/urfave/cli/v2"
)

func labelCommand() *cli.Command {
	return &cli.Command{
		Name:      "label",
		Usage:     "set (k=v) and remove (k-) labels of a node",
		ArgsUsage: "NODE k=v... k-...",
		Action: func(c *cli.Context) error {
			if c.NArg() < 2 {
				return usage(c, "want NODE k=v... [k-]...")
			}
			req := api.LabelRequest{Set: map[string]string{}}
			for _, a := range c.Args().Slice()[1:] {
				if k, v, ok := strings.Cut(a, "="); ok {
					req.Set[k] = v
					continue
				}
				if k, ok := strings.CutSuffix(a, "-"); ok && k != "" {
					req.Remove = append(req.Remove, k)
					continue
				}
				return usage(c, "%q: want key=value to set or key- to remove", a)
			}
			return apiClient(c).Label(c.Context, c.Args().First(), req)
		},
	}
}

func cordonCommand(name, help string, cordoned bool) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     help,
		ArgsUsage: "NODE",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usage(c, "want one NODE")
			}
			res, err := apiClient(c).Cordon(c.Context, c.Args().First(), cordoned)
			if err != nil {
				return err
			}
			// The drain is done; but the operator must hear at once what
			// it leaves without a node.
			for _, u := range res.Unplaced {
				warnUnplaced(c, u.App, u.Reason)
			}
			return nil
		},
	}
}

func leaveCommand() *cli.Command {
	return &cli.Command{
		Name:  "leave",
		Usage: "take this node out of its cluster for good: its instances move to other nodes, then it stops its containers and itself",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "wait", Value: api.DefaultLeaveWait.D(), Usage: "how long to wait for this node's instances to run on other nodes before stopping them anyway"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usage(c, "leave takes no argument")
			}
			if c.Duration("wait") <= 0 {
				return usage(c, "--wait must be positive")
			}
			res, err := apiClient(c).Leave(c.Context, api.LeaveRequest{Wait: api.Duration(c.Duration("wait"))})
			if err != nil {
				return err
			}
			w := c.App.Writer
			for _, in := range res.Instances {
				fmt.Fprintf(w, "%s: %s\n", in.Instance, in.Note)
			}
			fmt.Fprintf(w, "left the cluster; %d containers stopped on this node; the node is stopping\n", res.Stopped)
			return nil
		},
	}
}

func forgetCommand() *cli.Command {
	return &cli.Command{
		Name:      "forget",
		Usage:     "take a node that is gone for good (a dead device) out of the cluster; its name is free again",
		ArgsUsage: "NODE",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usage(c, "want one NODE")
			}
			if err := apiClient(c).Forget(c.Context, c.Args().First()); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "node %s is forgotten: its instances move, its name is free\n", c.Args().First())
			return nil
		},
	}
}

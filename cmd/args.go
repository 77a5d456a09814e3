package cmd

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsFirst refuses a flag given after a command's arguments: urfave/cli
// stops reading flags at the first argument, so `shoal ps web -o json`
// would otherwise print a table as if -o had not been given. After "--"
// (exec and run), and in a command given without "--", anything goes: it
// is the container's.
func flagsFirst(c *cli.Context) error {
	args := c.Args().Slice()
	if c.Command.Name == "exec" || c.Command.Name == "run" {
		end := -1
		for i, a := range args {
			if a == "--" {
				end = i
				break
			}
		}
		args = args[:max(end, 0)]
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if len(a) > 1 && strings.HasPrefix(a, "-") {
			var path []string
			for _, cc := range c.Lineage() {
				if cc.Command != nil && cc.Command.Name != "" {
					path = append([]string{cc.Command.Name}, path...)
				}
			}
			// The root context's command, when it has one, is the app itself.
			if len(path) > 1 && path[0] == c.App.Name {
				path = path[1:]
			}
			name := strings.Join(path, " ")
			usage := strings.TrimSpace("shoal " + name + " [FLAGS] " + c.Command.ArgsUsage)
			return fmt.Errorf("%s: flag %s after an argument: put flags before the arguments (%s)", name, a, usage)
		}
	}
	return nil
}

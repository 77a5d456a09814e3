package cmd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// usageError is a command line that does not fit the command: shown as
// one line that points at the command's help, with exit status 2.
type usageError struct {
	path string // "ps", "image ls"
	err  error
}

func (e *usageError) Error() string {
	if e.path == "" {
		return fmt.Sprintf("%v; see shoal --help", e.err)
	}
	return fmt.Sprintf("%s: %v; see shoal %s --help", e.path, e.err, e.path)
}

func (e *usageError) Unwrap() error { return e.err }

// usage makes a usageError for the command c runs.
func usage(c *cli.Context, format string, a ...any) error {
	return &usageError{path: commandPath(c), err: fmt.Errorf(format, a...)}
}

// onUsageError replaces urfave/cli's "Incorrect Usage" followed by the whole
// help text: the one line that says what is wrong is lost in it.
func onUsageError(c *cli.Context, err error, _ bool) error {
	var ue *usageError
	if errors.As(err, &ue) {
		return err
	}
	return &usageError{path: commandPath(c), err: err}
}

// commandPath names the command c runs, without the app's name: "image ls".
func commandPath(c *cli.Context) string {
	if c.Command == nil {
		return ""
	}
	var path []string
	for _, cc := range c.Lineage() {
		if cc.Command != nil && cc.Command.Name != "" {
			path = append([]string{cc.Command.Name}, path...)
		}
	}
	// The root context's command, when it has one, is the app itself.
	if len(path) > 0 && path[0] == c.App.Name {
		path = path[1:]
	}
	return strings.Join(path, " ")
}

// passThrough names the commands whose arguments after the first are a
// container's command line: from "--", or from the second argument when
// there is no "--", nothing is shoal's, so `shoal exec web ls -l` gives -l
// to ls while `shoal exec web -i -- cat` still reads -i.
func passThrough(command string) (keep int, ok bool) {
	switch command {
	case "exec", "run":
		return 1, true
	}
	return 0, false
}

// interspersed moves a command's flags before its arguments, so that every
// command takes its flags on either side of its arguments: urfave/cli/v2
// stops reading flags at the first argument. Only what comes after "--", or
// a pass-through command's container command line, stays where it is.
// Which tokens are flag values comes from the flags' definitions, so the
// value of `--tail 1` is never taken for an argument.
func interspersed(app *cli.App, args []string) ([]string, error) {
	if len(args) < 2 {
		return args, nil
	}
	var path []string
	out := []string{args[0]}
	rest := args[1:]
	flags, cmds := app.Flags, app.Commands
	var leaf *cli.Command
	// The app's flags and the command names down to the leaf, in order:
	// a command name ends the flags of its parent.
	for len(rest) > 0 {
		a := rest[0]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			next := findCommand(cmds, a)
			if next == nil {
				break
			}
			out = append(out, a)
			path = append(path, next.Name)
			rest = rest[1:]
			flags, cmds, leaf = next.Flags, next.Subcommands, next
			if len(cmds) == 0 {
				break
			}
			continue
		}
		// A flag missing its value is left for urfave/cli to name.
		n := max(flagTokens(flags, rest, app.UseShortOptionHandling), 1)
		out = append(out, rest[:n]...)
		rest = rest[n:]
	}
	if leaf == nil || len(leaf.Subcommands) > 0 {
		return append(out, rest...), nil
	}
	keep := -1 // positional arguments before the pass-through part
	if n, ok := passThrough(leaf.Name); ok {
		keep = n
	}
	var positional []string
	for len(rest) > 0 {
		a := rest[0]
		switch {
		case a == "--":
			positional = append(positional, rest...)
			rest = nil
		case a == "-" || !strings.HasPrefix(a, "-"):
			if keep >= 0 && len(positional) >= keep {
				positional = append(positional, rest...)
				rest = nil
				break
			}
			positional = append(positional, a)
			rest = rest[1:]
		default:
			n := flagTokens(leaf.Flags, rest, app.UseShortOptionHandling)
			if n == 0 {
				// Moved before the arguments, it would take one as its value.
				return nil, &usageError{path: strings.Join(path, " "), err: fmt.Errorf("flag needs a value: %s", a)}
			}
			out = append(out, rest[:n]...)
			rest = rest[n:]
		}
	}
	// A first argument that looks like a flag ("-") must not be read as one.
	if len(positional) > 0 && strings.HasPrefix(positional[0], "-") && positional[0] != "--" {
		out = append(out, "--")
	}
	return append(out, positional...), nil
}

// flagTokens is how many tokens the flag at args[0] spans: two when it
// takes a value given apart (`-o json`), else one (`-o=json`, `-it`, a
// flag unknown here, which urfave/cli then refuses by name); zero when its
// value is missing.
func flagTokens(flags []cli.Flag, args []string, combined bool) int {
	a := args[0]
	if strings.Contains(a, "=") {
		return 1
	}
	name := strings.TrimLeft(a, "-")
	f := findFlag(flags, name)
	if f == nil && combined && !strings.HasPrefix(a, "--") && len(name) > 1 {
		// -it: the last letter alone may take a value (-ie K=V).
		f = findFlag(flags, name[len(name)-1:])
	}
	switch {
	case f == nil || !takesValue(f):
		return 1
	case len(args) < 2:
		return 0
	}
	return 2
}

func takesValue(f cli.Flag) bool {
	if v, ok := f.(interface{ TakesValue() bool }); ok {
		return v.TakesValue()
	}
	return false
}

func findFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// Package cmd owns shoal's command line: flag parsing, the one-file-per-
// command urfave/cli definitions and output as aligned tables or JSON. It
// holds no logic of its own: commands call the node API through api/client,
// and `shoal up` hands its flags to cluster.
package cmd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/shoal-edge/shoal/api/client"
	"github.com/shoal-edge/shoal/cluster"
	"github.com/urfave/cli/v2"
)

// Set at build time with -ldflags "-X ...".
var (
	version = "dev"
	commit  = "unknown"
)

// exitError carries an exit status other than 1 (a container's, for run).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Main runs the CLI and returns the process exit status.
func Main(args []string) int {
	if cluster.IsContainerInit(args) {
		cluster.ContainerInit() // never returns
	}
	return run(args, os.Stdin, os.Stdout, os.Stderr)
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := App()
	app.Reader, app.Writer, app.ErrWriter = stdin, stdout, stderr
	args, err := interspersed(app, args)
	if err == nil {
		err = app.Run(args)
	}
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintln(stderr, "shoal:", err)
		var ue *usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

const defaultDataDir = "/var/lib/shoal"

// dataDirFlag is made anew for every use: urfave/cli writes into flags.
func dataDirFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name:    "data-dir",
		Usage:   "the node's data directory (its API socket is DIR/shoal.sock)",
		EnvVars: []string{"SHOAL_DATA_DIR"},
		Value:   defaultDataDir,
	}
}

// remoteFlags choose a remote node instead of the local socket.
func remoteFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:    "server",
			Usage:   "talk to the node at HOST:PORT (its cluster port) over mutual TLS instead of the local socket",
			EnvVars: []string{"SHOAL_SERVER"},
		},
		&cli.StringFlag{
			Name:    "credential",
			Usage:   "the admin credential, or a file holding it (bootstrap writes DATA/tls/admin.credential): for --server, and to take a write that a non-voter refuses to a voter",
			EnvVars: []string{"SHOAL_CREDENTIAL"},
		},
	}
}

func outputFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name:    "output",
		Aliases: []string{"o"},
		Usage:   "output format: table or json",
		Value:   "table",
	}
}

// App builds the command tree.
func App() *cli.App {
	app := &cli.App{
		Name:    "shoal",
		Usage:   "a self-healing container cluster for edge devices",
		Version: version,
		// --version is shoal's own flag (below): urfave/cli's prints
		// through a package variable and says less than `shoal version`.
		HideVersion: true,
		Flags: append([]cli.Flag{
			dataDirFlag(),
			&cli.BoolFlag{Name: "version", Aliases: []string{"v"}, Usage: "print the version, as shoal version does"},
		}, remoteFlags()...),
		Action: func(c *cli.Context) error {
			if c.Bool("version") {
				return printVersion(c)
			}
			if c.NArg() > 0 {
				return &usageError{path: "", err: fmt.Errorf("no command %q", c.Args().First())}
			}
			return cli.ShowAppHelp(c)
		},
		UseShortOptionHandling: true,
		// A repeated flag's value is one value: -e A=x,y is A=x,y, not
		// A=x and an entry y the container would get as is.
		DisableSliceFlagSeparator: true,
		EnableBashCompletion:      true,
		OnUsageError:              onUsageError,
		ExitErrHandler:            func(*cli.Context, error) {},
		Commands: []*cli.Command{
			upCommand(),
			statusCommand(),
			nodesCommand(),
			applyCommand(),
			rmCommand(),
			scaleCommand(),
			psCommand(),
			logsCommand(),
			runCommand(),
			execCommand(),
			imageCommand(),
			tokenCommand(),
			labelCommand(),
			cordonCommand("drain", "move the instances off a node and keep new ones away", true),
			cordonCommand("uncordon", "let a drained node take instances again", false),
			leaveCommand(),
			forgetCommand(),
			recoverCommand(),
			snapshotCommand(),
			versionCommand(),
		},
	}
	// Every command takes --data-dir (and those that talk to a node
	// --server and --credential) after its name too (`shoal up --data-dir
	// D`), as well as before it.
	var addDataDir func([]*cli.Command)
	addDataDir = func(cmds []*cli.Command) {
		for _, c := range cmds {
			c.Flags = append(c.Flags, dataDirFlag())
			c.OnUsageError = onUsageError
			if c.Name != "up" && c.Name != "version" && c.Name != "recover" {
				c.Flags = append(c.Flags, remoteFlags()...)
			}
			addDataDir(c.Subcommands)
		}
	}
	addDataDir(app.Commands)
	return app
}

// dataDir is --data-dir from wherever it was given: after the command,
// before it, or the environment; the default otherwise.
func dataDir(c *cli.Context) string {
	if v := flagValue(c, "data-dir"); v != "" {
		return v
	}
	return defaultDataDir
}

// flagValue is a string flag from wherever it was given: on the command
// line, before or after the command, else from the environment. urfave/cli
// counts a flag its environment variable sets as set on every level that
// defines it, so a value that differs from the environment's is the one
// given on the command line, which wins.
func flagValue(c *cli.Context, name string) string {
	env, fromEnv := os.LookupEnv(envVarOf(c, name))
	for _, cc := range c.Lineage() {
		if v := cc.String(name); cc.IsSet(name) && v != "" && (!fromEnv || v != env) {
			return v
		}
	}
	for _, cc := range c.Lineage() {
		if cc.IsSet(name) && cc.String(name) != "" {
			return cc.String(name)
		}
	}
	return ""
}

// envVarOf is the environment variable of the string flag name.
func envVarOf(c *cli.Context, name string) string {
	for _, cc := range c.Lineage() {
		flags := cc.App.Flags
		if cc.Command != nil {
			flags = cc.Command.Flags
		}
		for _, f := range flags {
			if sf, ok := f.(*cli.StringFlag); ok && sf.Name == name && len(sf.EnvVars) > 0 {
				return sf.EnvVars[0]
			}
		}
	}
	return ""
}

// apiClient talks to the local node, or with --server to a remote one. A
// bad --credential comes back from the client's first call that needs it.
// With a credential, a write that a non-voter refuses goes to a voter.
func apiClient(c *cli.Context) *client.Client {
	cred := flagValue(c, "credential")
	if server := flagValue(c, "server"); server != "" {
		if cred == "" {
			return client.Unusable(usage(c, "--server needs --credential (or SHOAL_CREDENTIAL): the admin credential, which the bootstrap node keeps in DATA/tls/admin.credential"))
		}
		cfg, err := cluster.RemoteTLS(cred)
		if err != nil {
			return client.Unusable(fmt.Errorf("--credential: %w", err))
		}
		return client.NewRemote(server, cfg)
	}
	dir := dataDir(c)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	local := client.New(cluster.SocketPath(dir))
	if cred != "" {
		local.WithCredential(func() (*tls.Config, error) { return cluster.RemoteTLS(cred) })
	}
	return local
}

package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster"
	"github.com/urfave/cli/v2"
)

func upCommand() *cli.Command {
	def := cluster.DefaultConfig()
	return &cli.Command{
		Name:  "up",
		Usage: "run this node in the foreground (bootstraps a cluster on an empty data dir, resumes otherwise)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "node name (default: the host name; fixed once the data dir exists)"},
			&cli.StringFlag{Name: "bind", Usage: "IP address to listen on", Value: def.BindAddr},
			&cli.StringFlag{Name: "advertise", Usage: "IP address other nodes reach this one at (default: bind, or the first non-loopback address)"},
			&cli.IntFlag{Name: "gossip-port", Usage: "gossip port (TCP and UDP)", Value: def.GossipPort},
			&cli.IntFlag{Name: "port", Usage: "cluster port: Raft, the remote API and joins, over mutual TLS", Value: def.Port},
			&cli.StringFlag{Name: "join", Usage: "join the cluster of this `TOKEN` (from shoal token) instead of bootstrapping one; prefer the environment or --join-file, as the command line is readable by every user", EnvVars: []string{"SHOAL_JOIN"}},
			&cli.StringFlag{Name: "join-file", Usage: "join the cluster of the token in `FILE` (as --join)", EnvVars: []string{"SHOAL_JOIN_FILE"}},
			&cli.StringSliceFlag{Name: "label", Usage: "node label k=v (repeatable)"},
			&cli.IntFlag{Name: "voters", Usage: "voters the cluster keeps (odd)", Value: def.Voters},
			&cli.DurationFlag{Name: "dead-voter-grace", Usage: "how long a voter may be unreachable before a non-voter replaces it", Value: def.DeadVoterGrace},
			&cli.DurationFlag{Name: "spare-idle", Usage: "how long (`DURATION`) a container init started ahead of time for the next shoal run is kept unused (0: none)", Value: def.SpareIdle},
			&cli.BoolFlag{Name: "spare-monitor", Usage: "keep a container monitor started ahead of time for the next start or restart (--spare-monitor=false saves its ~2.3 MB)", Value: def.SpareMonitor},
			&cli.StringSliceFlag{Name: "allow-host-path", Usage: "apps may bind this host `PATH` and what is under it (repeatable); none: only the paths given, not the built-in list (see docs/spec.md, Volumes)"},
			&cli.StringFlag{Name: "image-max-unpacked", Usage: "the most one image's files may add up to once unpacked (`SIZE`, e.g. 8Gi); bigger imports and pulls are refused", Value: api.Bytes(def.ImageMaxUnpacked).String()},
			&cli.DurationFlag{Name: "image-pull-stall", Usage: "fail a pull when the registry sends nothing for this long", Value: def.ImagePullStall},
			&cli.DurationFlag{Name: "image-pull-timeout", Usage: "give up one attempt to pull an app's image after this long, and retry (0: no limit)", Value: def.ImagePullTimeout},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info"},
		},
		Action: up,
	}
}

func up(c *cli.Context) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return usage(c, "--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	cfg := cluster.DefaultConfig()
	cfg.DataDir = dataDir(c)
	cfg.Name = c.String("name")
	cfg.BindAddr = c.String("bind")
	cfg.AdvertiseAddr = c.String("advertise")
	cfg.GossipPort = c.Int("gossip-port")
	cfg.Port = c.Int("port")
	cfg.Voters = c.Int("voters")
	join, err := joinToken(c)
	if err != nil {
		return err
	}
	cfg.Join = join
	cfg.DeadVoterGrace = c.Duration("dead-voter-grace")
	cfg.SpareIdle = c.Duration("spare-idle")
	cfg.SpareMonitor = c.Bool("spare-monitor")
	cfg.AllowHostPaths = c.StringSlice("allow-host-path")
	maxUnpacked, err := api.ParseBytes(c.String("image-max-unpacked"))
	if err != nil {
		return usage(c, "--image-max-unpacked: %v", err)
	}
	cfg.ImageMaxUnpacked = int64(maxUnpacked)
	cfg.ImagePullStall = c.Duration("image-pull-stall")
	cfg.ImagePullTimeout = c.Duration("image-pull-timeout")
	cfg.Labels = map[string]string{}
	for _, l := range c.StringSlice("label") {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return usage(c, "--label %q: want key=value", l)
		}
		if _, dup := cfg.Labels[k]; dup {
			return usage(c, "--label %s given twice", k)
		}
		cfg.Labels[k] = v
	}
	cfg.Logger = slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	node, err := cluster.New(cfg)
	if err != nil {
		return outOfCluster(c, err)
	}
	defer node.Close()
	done := make(chan error, 1)
	go func() { done <- node.Run(ctx) }()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := node.WaitLeader(wctx); err == nil {
		st, _ := node.Status(ctx)
		fmt.Fprintf(c.App.Writer, "shoal node %s is up: cluster %s, leader %s. Stop with Ctrl-C.\n", st.Node, st.ClusterID, st.Leader)
		if node.Bootstrapped() {
			printBootstrap(c, node, cfg.DataDir)
		}
	}
	cancel()
	return outOfCluster(c, <-done)
}

// exitRemoved is the exit status of `shoal up` for a node that is out of
// its cluster (it left, or was forgotten): starting it again cannot help,
// so a service manager can be told not to (RestartPreventExitStatus=3).
const exitRemoved = 3

// outOfCluster gives a node's removal from its cluster its own exit status.
func outOfCluster(c *cli.Context, err error) error {
	if !errors.Is(err, api.ErrRemoved) {
		return err
	}
	fmt.Fprintln(c.App.ErrWriter, "shoal:", err)
	return exitError{exitRemoved}
}

// printBootstrap tells, once, how to grow the new cluster and how to
// reach it from elsewhere.
func printBootstrap(c *cli.Context, node *cluster.Node, dataDir string) {
	w := c.App.Writer
	if tok, err := node.JoinToken(); err == nil {
		fmt.Fprintf(w, "\nJoin other nodes with (again any time: shoal token; or put the token in a root-only file for shoal up --join-file FILE):\n  %s\n", joinCommand(tok))
	}
	// The credential itself never goes to the output, which a service
	// manager keeps in a journal others may read: only where it is.
	if cred := cluster.AdminCredentialPath(dataDir); fileExists(cred) {
		fmt.Fprintf(w, "\nThe admin credential for the remote CLI is in %s (root only; treat it as a root password).\n", cred)
		fmt.Fprintf(w, "Copy that file to the admin's machine and use it as a file, not on the command line:\n  SHOAL_CREDENTIAL=/path/to/admin.credential shoal --server HOST:%d nodes\n", c.Int("port"))
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// joinToken is --join, or the token in --join-file.
func joinToken(c *cli.Context) (string, error) {
	tok, file := c.String("join"), c.String("join-file")
	if file == "" {
		return tok, nil
	}
	if tok != "" {
		return "", fmt.Errorf("--join and --join-file (or SHOAL_JOIN and SHOAL_JOIN_FILE) both given: use one")
	}
	// Bounded: a token is some hundred bytes.
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("--join-file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4<<10))
	if err != nil {
		return "", fmt.Errorf("--join-file %s: %w", file, err)
	}
	tok = strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("--join-file %s is empty", file)
	}
	return tok, nil
}

package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/runtime/image"
)

// Config describes one node.
type Config struct {
	DataDir string
	// Name is this node's name; default the host name.
	Name string
	// BindAddr is the IP the node listens on; AdvertiseAddr the one others
	// dial (default: BindAddr, or the first non-loopback address).
	BindAddr      string
	AdvertiseAddr string
	GossipPort    int
	Port          int
	// Join is a join token: an empty data dir joins that cluster instead
	// of bootstrapping a new one.
	Join string
	// Voters is how many voters the cluster keeps (odd).
	Voters int
	// DeadVoterGrace is how long a voter may be gone from gossip before
	// autopilot replaces it with a non-voter.
	DeadVoterGrace time.Duration
	// SpareIdle is how long a spare container init for the next one-off
	// container (shoal run) is kept unused; 0 makes none.
	SpareIdle time.Duration
	// SpareMonitor keeps a container monitor process started ahead of
	// time for the next container start or restart.
	SpareMonitor bool
	// AllowHostPaths are the host paths apps may bind on this node, each
	// with everything under it, beside the built-in list; "none" drops the
	// built-in list (see cluster/hostpath). A node setting: no API caller
	// can widen it.
	AllowHostPaths []string
	// ImageMaxUnpacked is the most one image's files may add up to once
	// unpacked; imports and pulls of a bigger image are refused.
	ImageMaxUnpacked int64
	// ImagePullStall fails a pull when the registry sends nothing for
	// this long; ImagePullTimeout bounds each pull the agent makes for an
	// instance (0: no bound), after which it retries with backoff.
	ImagePullStall   time.Duration
	ImagePullTimeout time.Duration
	// Labels are recorded when the cluster first registers the node; on
	// a restart they are ignored (`shoal label` changes them).
	Labels map[string]string
	Logger *slog.Logger
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		DataDir:    "/var/lib/shoal",
		Name:       api.SanitizeName(host),
		BindAddr:   "0.0.0.0",
		GossipPort: 7946,
		Port:       7947,
		Voters:     3,

		DeadVoterGrace: 30 * time.Second,
		SpareIdle:      time.Minute,
		SpareMonitor:   true,

		ImageMaxUnpacked: image.DefaultMaxUnpacked,
		ImagePullStall:   image.DefaultPullStall,
		ImagePullTimeout: time.Hour,
	}
}

// Validate checks a config before anything is created.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir: required"))
	}
	// An empty name means: the one in the data dir, or the host name.
	if c.Name != "" && !api.ValidName(c.Name) {
		errs = append(errs, fmt.Errorf("name %q: must be a DNS label (lower-case letters, digits, '-')", c.Name))
	}
	if net.ParseIP(c.BindAddr) == nil {
		errs = append(errs, fmt.Errorf("bind %q: not an IP address", c.BindAddr))
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		errs = append(errs, fmt.Errorf("advertise %q: not an IP address", c.AdvertiseAddr))
	}
	for name, p := range map[string]int{"gossip port": c.GossipPort, "port": c.Port} {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s %d: must be 1-65535", name, p))
		}
	}
	if c.GossipPort == c.Port {
		errs = append(errs, fmt.Errorf("gossip port and port are both %d", c.Port))
	}
	if c.Voters < 1 || c.Voters%2 == 0 {
		errs = append(errs, fmt.Errorf("voters %d: must be odd and at least 1", c.Voters))
	}
	if c.DeadVoterGrace < time.Second {
		errs = append(errs, fmt.Errorf("dead voter grace %s: must be at least 1s", c.DeadVoterGrace))
	}
	if c.SpareIdle < 0 {
		errs = append(errs, fmt.Errorf("spare idle %s: must not be negative", c.SpareIdle))
	}
	if err := checkHostPaths(c.AllowHostPaths); err != nil {
		errs = append(errs, err)
	}
	if c.ImageMaxUnpacked < 1<<20 {
		errs = append(errs, fmt.Errorf("image max unpacked %d: must be at least 1Mi", c.ImageMaxUnpacked))
	}
	if c.ImagePullStall < time.Second {
		errs = append(errs, fmt.Errorf("image pull stall %s: must be at least 1s", c.ImagePullStall))
	}
	if c.ImagePullTimeout < 0 {
		errs = append(errs, fmt.Errorf("image pull timeout %s: must not be negative", c.ImagePullTimeout))
	}
	for k, v := range c.Labels {
		if err := api.ValidLabel(k, v); err != nil {
			errs = append(errs, err)
		}
	}
	if b, _ := json.Marshal(c.Labels); len(c.Labels) > 0 && len(b) > maxLabelBytes {
		errs = append(errs, fmt.Errorf("labels take %d bytes: at most %d at start, as they travel with gossip (add more with `shoal label`)", len(b), maxLabelBytes))
	}
	return errors.Join(errs...)
}

// checkHostPaths checks the entries of --allow-host-path: "none" or clean
// absolute paths.
func checkHostPaths(entries []string) error {
	for _, e := range entries {
		switch {
		case e == "none":
		case !filepath.IsAbs(e) || slices.Contains(strings.Split(e, "/"), ".."):
			return fmt.Errorf("allow host path %q: want an absolute path without .. or none", e)
		}
	}
	return nil
}

// SocketPath is the local API socket of a data dir.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "shoal.sock") }

// advertise picks the address other nodes dial.
func (c *Config) advertise() (string, error) {
	if c.AdvertiseAddr != "" {
		return c.AdvertiseAddr, nil
	}
	if ip := net.ParseIP(c.BindAddr); ip != nil && !ip.IsUnspecified() {
		return c.BindAddr, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("find an address to advertise: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String(), nil
		}
	}
	return "127.0.0.1", nil
}

// maxLabelBytes bounds the --label of a node, JSON-encoded, so that its
// gossip metadata stays under memberlist's 512 bytes.
const maxLabelBytes = 256

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/agent"
	"github.com/shoal-edge/shoal/cluster/hostpath"
	"github.com/shoal-edge/shoal/runtime/cgroup"
	"github.com/shoal-edge/shoal/runtime/exit"
	"github.com/shoal-edge/shoal/runtime/image"
	"github.com/shoal-edge/shoal/runtime/linux"
	"github.com/shoal-edge/shoal/runtime/monitor"
	"github.com/shoal-edge/shoal/runtime/supervise"
)

// IsContainerInit reports whether this process was started as a container's
// init by the runtime; the CLI checks it before anything else.
func IsContainerInit(args []string) bool { return linux.IsInit(args) }

// ContainerInit becomes the container's init; it never returns.
func ContainerInit() { linux.InitMain() }

// nodeRuntime runs this node's containers: the agent's instances (it is the
// agent's Runtime) and one-off runs. It is the one place where an app's spec
// meets the Linux runtime's: images are resolved, volumes checked against
// this node's host path rule, and every instance started under a monitor
// of its own so that it outlives the daemon. It holds no lock: its parts
// are safe for concurrent use.
type nodeRuntime struct {
	cfg      nodeRuntimeConfig
	images   imageSource
	rt       containerRuntime
	monitors instanceMonitors

	// cleanups tracks one-off containers being removed after their exit.
	cleanups sync.WaitGroup

	runsMu sync.Mutex // guards runs
	// runs stops each one-off container that runs (stopRuns).
	runs map[*runningRun]struct{}
}

// runningRun is a one-off container that runs: cancel stops it, done
// closes once run has returned.
type runningRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// nodeRuntimeConfig is what nodeRuntime needs to know of its node.
type nodeRuntimeConfig struct {
	Node           string   // the node's name, in errors
	DataDir        string   // named volumes live under DATA/volumes
	AllowHostPaths []string // Config.AllowHostPaths
	// PullTimeout bounds a one-off container's image pull, as the
	// agent's bounds an app's.
	PullTimeout time.Duration
	Logger      *slog.Logger
}

// imageSource is what nodeRuntime needs of the image store.
type imageSource interface {
	Get(ref string) (image.Image, error)
	Pull(ctx context.Context, ref string, opts image.PullOptions) (image.Image, error)
	Rootfs(ctx context.Context, ref string) (string, image.RunConfig, error)
}

// containerRuntime is what nodeRuntime needs of the Linux runtime: one-off
// containers, and exec into an instance's.
type containerRuntime interface {
	Start(ctx context.Context, s linux.Spec) (*linux.Container, error)
	Attach(s linux.Spec, pid int) (*linux.Container, error)
	Exec(ctx context.Context, c *linux.Container, p linux.Process) (exit.Status, error)
}

// instanceMonitors starts instances under monitors and finds the ones a
// previous daemon left running.
type instanceMonitors interface {
	Start(ctx context.Context, s monitor.Spec) (*monitor.Handle, error)
	Adopt() ([]*monitor.Handle, error)
}

var (
	_ imageSource      = (*image.Store)(nil)
	_ containerRuntime = (*linux.Runtime)(nil)
	_ instanceMonitors = (*monitor.Monitors)(nil)
	_ agent.Runtime    = (*nodeRuntime)(nil)
)

func newNodeRuntime(cfg nodeRuntimeConfig, images imageSource, rt containerRuntime, monitors instanceMonitors) *nodeRuntime {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &nodeRuntime{cfg: cfg, images: images, rt: rt, monitors: monitors}
}

// wait waits for the one-off containers being removed.
func (c *nodeRuntime) wait() { c.cleanups.Wait() }

func (c *nodeRuntime) HasImage(ref string) bool {
	_, err := c.images.Get(ref)
	return err == nil
}

func (c *nodeRuntime) Pull(ctx context.Context, ref string) error {
	_, err := c.images.Pull(ctx, ref, image.PullOptions{})
	return err
}

func (c *nodeRuntime) Start(ctx context.Context, in agent.Instance) (supervise.Process, error) {
	app := in.App
	if err := os.MkdirAll(filepath.Dir(in.LogPath), 0o700); err != nil {
		return nil, err
	}
	env := make([]string, 0, len(app.Env))
	for _, k := range slices.Sorted(maps.Keys(app.Env)) {
		env = append(env, k+"="+app.Env[k])
	}
	// Volumes first: a host path this node refuses fails the start before
	// anything is prepared for it.
	mounts, err := c.volumes(app.Volumes)
	if err != nil {
		return nil, err
	}
	spec, err := c.containerSpec(ctx, in.ID, in.Hostname, app.Image, app.Command, env, app.Network == api.NetworkHost)
	if err != nil {
		return nil, err
	}
	// The container runs under a monitor process of its own, so that it
	// outlives this daemon; the labels say which allocation it serves.
	spec.Resources = cgroup.Resources{Memory: int64(app.Resources.Memory), CPU: app.Resources.CPU, Pids: app.Resources.Pids}
	spec.User = app.User
	spec.Rlimits = rlimits(app.Rlimits)
	spec.ReadOnlyRootfs = app.ReadOnly
	spec.Mounts = mounts
	h, err := c.monitors.Start(ctx, monitor.Spec{
		Spec:    spec,
		LogPath: in.LogPath,
		Labels: map[string]string{
			labelApp:     in.Allocation.App,
			labelIndex:   strconv.Itoa(in.Allocation.Index),
			labelVersion: strconv.FormatUint(in.Allocation.Version, 10),
		},
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// rlimits turns an app's validated limits into the runtime's.
func rlimits(m map[string]string) []linux.Rlimit {
	var out []linux.Rlimit
	for _, name := range slices.Sorted(maps.Keys(m)) {
		soft, hard, err := api.ParseRlimit(m[name])
		if err != nil {
			continue // Validate refused it already
		}
		out = append(out, linux.Rlimit{Type: name, Soft: soft, Hard: hard})
	}
	return out
}

// volumes turns an app's volumes into bind mounts: NAME:/path is the named
// volume DATA/volumes/NAME (created on first use and kept after the app is
// removed: it holds the app's data), /host/path:/path a host file,
// directory or device this node allows (--allow-host-path); a ":ro"
// suffix makes it read-only.
func (c *nodeRuntime) volumes(specs []string) ([]linux.Mount, error) {
	var out []linux.Mount
	for _, v := range specs {
		vol, err := api.ParseVolume(v)
		if err != nil {
			return nil, err
		}
		if !vol.HostPath {
			src := filepath.Join(c.cfg.DataDir, "volumes", vol.Source)
			if err := os.MkdirAll(src, 0o755); err != nil {
				return nil, fmt.Errorf("volume %s: %w", vol.Source, err)
			}
			out = append(out, linux.Mount{Source: src, Target: vol.Target, ReadOnly: vol.ReadOnly, Populate: true})
			continue
		}
		// This node's operator decides which host paths apps may bind
		// here; the runtime then binds the very file that was checked.
		t, err := hostpath.Check(c.cfg.AllowHostPaths, c.cfg.DataDir, vol.Source, vol.ReadOnly)
		if r := (*hostpath.Refused)(nil); errors.As(err, &r) {
			r.Node = c.cfg.Node
			return nil, fmt.Errorf("volume %s: %w", v, err)
		}
		if err != nil {
			return nil, fmt.Errorf("volume %s on node %s: %w", v, c.cfg.Node, err)
		}
		out = append(out, linux.Mount{Source: t.Resolved, Target: vol.Target, ReadOnly: vol.ReadOnly,
			Expect: &linux.FileID{Dev: t.Dev, Ino: t.Ino}})
	}
	return out, nil
}

// Labels a monitor keeps for the agent that adopts its container.
const (
	labelApp     = "shoal.app"
	labelIndex   = "shoal.index"
	labelVersion = "shoal.version"
)

// adopt finds the containers a previous daemon left running.
func (c *nodeRuntime) adopt() []agent.Adopted {
	hs, err := c.monitors.Adopt()
	if err != nil {
		c.cfg.Logger.Warn("adopt containers", "err", err)
	}
	var out []agent.Adopted
	// Containers no allocation can take are stopped side by side: each
	// may wait out its grace, and the node is not up until they are gone.
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := func(h *monitor.Handle) {
		wg.Go(func() {
			h.Stop(2 * time.Second)
			h.Wait()
			h.Delete()
		})
	}
	for _, h := range hs {
		if h.Pid() == 0 {
			// The daemon died before this container's monitor started:
			// there is nothing to adopt, only a directory to remove.
			if err := h.Delete(); err != nil {
				c.cfg.Logger.Warn("remove a container that never started", "container", h.ID(), "err", err)
			}
			continue
		}
		l := h.Spec().Labels
		idx, err1 := strconv.Atoi(l[labelIndex])
		ver, err2 := strconv.ParseUint(l[labelVersion], 10, 64)
		if l[labelApp] == "" || err1 != nil || err2 != nil {
			c.cfg.Logger.Warn("container without allocation labels: stopping it", "container", h.ID())
			stop(h)
			continue
		}
		if err := c.recheckMounts(h.Spec().Mounts); err != nil {
			// Started under a wider --allow-host-path (or before there
			// was one): the agent starts it again, and the check says why
			// it cannot run.
			c.cfg.Logger.Warn("container binds a host path this node no longer allows: stopping it", "container", h.ID(), "err", err)
			stop(h)
			continue
		}
		out = append(out, agent.Adopted{App: l[labelApp], Index: idx, Version: ver, Process: h})
	}
	return out
}

// recheckMounts reports a host path of a running container's mounts that
// this node's rule refuses; named volumes (under DATA/volumes) are the
// node's own.
func (c *nodeRuntime) recheckMounts(mounts []linux.Mount) error {
	volumes := filepath.Join(c.cfg.DataDir, "volumes") + "/"
	for _, m := range mounts {
		if strings.HasPrefix(m.Source, volumes) {
			continue
		}
		// Only a refusal stops it: a path gone since (a USB stick pulled)
		// leaves the running container as it is.
		_, err := hostpath.Check(c.cfg.AllowHostPaths, c.cfg.DataDir, m.Source, m.ReadOnly)
		if r := (*hostpath.Refused)(nil); errors.As(err, &r) {
			return err
		}
	}
	return nil
}

// containerSpec resolves an image and a command into a runtime spec.
func (c *nodeRuntime) containerSpec(ctx context.Context, id, hostname, ref string, command, env []string, hostNet bool) (linux.Spec, error) {
	rootfs, rc, err := c.images.Rootfs(ctx, ref)
	if err != nil {
		if errors.Is(err, image.ErrNotFound) {
			return linux.Spec{}, fmt.Errorf("image %s is not on node %s: import it with `shoal image import`: %w", ref, c.cfg.Node, api.ErrNotFound)
		}
		return linux.Spec{}, fmt.Errorf("prepare image %s: %w", ref, err)
	}
	args := command
	if len(args) == 0 {
		args = append(slices.Clone(rc.Entrypoint), rc.Cmd...)
	}
	if len(args) == 0 {
		return linux.Spec{}, fmt.Errorf("%w: image %s has no entrypoint or cmd: give a command", api.ErrInvalid, ref)
	}
	return linux.Spec{
		ID:          id,
		Hostname:    hostname,
		Image:       rootfs,
		Args:        args,
		Env:         mergeEnv(rc.Env, env),
		Cwd:         rc.WorkingDir,
		HostNetwork: hostNet,
	}, nil
}

// mergeEnv lays the app's variables over the image's.
func mergeEnv(base, over []string) []string {
	out := slices.Clone(base)
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		out = slices.DeleteFunc(out, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		out = append(out, kv)
	}
	return out
}

// run runs a one-off container outside scheduling and returns its exit
// code. Ending ctx (the client went away) stops the container.
func (c *nodeRuntime) run(ctx context.Context, req api.RunRequest, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	host := req.Name
	if host == "" {
		host = "run"
	}
	switch req.Network {
	case "", api.NetworkBridge, api.NetworkHost:
	default:
		return -1, fmt.Errorf("%w: network %q: want bridge or host", api.ErrInvalid, req.Network)
	}
	// A missing image is pulled, as for an app's instance.
	if _, err := c.images.Get(req.Image); errors.Is(err, image.ErrNotFound) {
		fmt.Fprintf(stderr, "pulling %s\n", req.Image)
		if err := c.pullForRun(ctx, req.Image); err != nil {
			return -1, err
		}
	}
	// No id: the runtime names a one-off (oneOffPrefix) and may start it
	// on an init it made ahead of time.
	spec, err := c.containerSpec(ctx, "", api.SanitizeName(host), req.Image, req.Command, req.Env, req.Network == api.NetworkHost)
	if err != nil {
		return -1, err
	}
	spec.Stdin, spec.Stdout, spec.Stderr = stdin, stdout, stderr
	ctr, err := c.rt.Start(ctx, spec)
	// A program that did not start (not found, not executable) ends the
	// run as it ends an exec and a shell's command: 127 or 126, and why.
	var ie *linux.InitError
	if errors.As(err, &ie) {
		fmt.Fprintf(stderr, "shoal run: %v\n", ie)
		return ie.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	id := ctr.ID()
	ctx, cancel := context.WithCancel(ctx)
	rr := &runningRun{cancel: cancel, done: make(chan struct{})}
	c.runsMu.Lock()
	if c.runs == nil {
		c.runs = map[*runningRun]struct{}{}
	}
	c.runs[rr] = struct{}{}
	c.runsMu.Unlock()
	defer func() {
		cancel()
		c.runsMu.Lock()
		delete(c.runs, rr)
		c.runsMu.Unlock()
		close(rr.done)
	}()
	// The exit code goes back before the container is removed: the user
	// waits for the program, not for the unmount. wait waits for these.
	c.cleanups.Add(1)
	defer func() {
		go func() {
			defer c.cleanups.Done()
			if err := ctr.Delete(); err != nil {
				c.cfg.Logger.Warn("remove one-off container", "container", id, "err", err)
			}
		}()
	}()
	done := make(chan exit.Status, 1)
	go func() { done <- ctr.Wait() }()
	select {
	case ex := <-done:
		return ex.Code, nil
	case <-ctx.Done():
		ctr.Stop(2 * time.Second)
		ex := <-done
		return ex.Code, ctx.Err()
	}
}

// stopRuns stops every one-off container that runs and returns how many
// there were, once each is stopped: a node that leaves its cluster
// leaves none of them behind, and counts them.
func (c *nodeRuntime) stopRuns() int {
	c.runsMu.Lock()
	runs := make([]*runningRun, 0, len(c.runs))
	for rr := range c.runs {
		runs = append(runs, rr)
	}
	c.runsMu.Unlock()
	for _, rr := range runs {
		rr.cancel()
	}
	for _, rr := range runs {
		<-rr.done
	}
	return len(runs)
}

// pullForRun pulls the image of a one-off container within the pull time
// the node allows an app's image.
func (c *nodeRuntime) pullForRun(ctx context.Context, ref string) error {
	if d := c.cfg.PullTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d, fmt.Errorf("timed out after %s", d))
		defer cancel()
	}
	if _, err := c.images.Pull(ctx, ref, image.PullOptions{}); err != nil {
		return fmt.Errorf("%w%s", err, limitHint(err)) // the store's error names ref
	}
	return nil
}

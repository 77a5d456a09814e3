package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/agent"
	"github.com/shoal-edge/shoal/runtime/cgroup"
	"github.com/shoal-edge/shoal/runtime/image"
	"github.com/shoal-edge/shoal/runtime/linux"
	"github.com/shoal-edge/shoal/runtime/supervise"
)

// IsContainerInit reports whether this process was started as a container's
// init by the runtime; the CLI checks it before anything else.
func IsContainerInit(args []string) bool { return linux.IsInit(args) }

// ContainerInit becomes the container's init; it never returns.
func ContainerInit() { linux.InitMain() }

// runtimeAdapter translates the agent's instances into the Linux runtime's
// specs: the one place where app spec meets container spec.
type runtimeAdapter struct{ n *Node }

var _ agent.Runtime = runtimeAdapter{}

func (ra runtimeAdapter) HasImage(ref string) bool {
	_, err := ra.n.images.Get(ref)
	return err == nil
}

func (ra runtimeAdapter) Pull(ctx context.Context, ref string) error {
	_, err := ra.n.images.Pull(ctx, ref, image.PullOptions{})
	return err
}

func (ra runtimeAdapter) Start(ctx context.Context, in agent.Instance) (supervise.Process, error) {
	app := in.App
	if err := os.MkdirAll(filepath.Dir(in.LogPath), 0o700); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(in.LogPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	// The child gets its own descriptor; ours is not needed after start.
	defer log.Close()
	env := make([]string, 0, len(app.Env))
	for _, k := range slices.Sorted(maps.Keys(app.Env)) {
		env = append(env, k+"="+app.Env[k])
	}
	spec, err := ra.n.containerSpec(ctx, in.ID, in.Hostname, app.Image, app.Command, env, app.Network == api.NetworkHost)
	if err != nil {
		return nil, err
	}
	spec.Resources = cgroup.Resources{Memory: int64(app.Resources.Memory), CPU: app.Resources.CPU, Pids: app.Resources.Pids}
	spec.Stdout, spec.Stderr = log, log
	c, err := ra.n.rt.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// containerSpec resolves an image and a command into a runtime spec.
func (n *Node) containerSpec(ctx context.Context, id, hostname, ref string, command, env []string, hostNet bool) (linux.Spec, error) {
	rootfs, rc, err := n.images.Rootfs(ctx, ref)
	if err != nil {
		if errors.Is(err, image.ErrNotFound) {
			return linux.Spec{}, fmt.Errorf("image %s is not on node %s: import it with `shoal image import`: %w", ref, n.id.Name, api.ErrNotFound)
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

// RunContainer runs a one-off container outside scheduling and returns its exit
// code. Ending ctx (the client went away) stops the container.
func (n *Node) RunContainer(ctx context.Context, req api.RunRequest, stdout, stderr io.Writer) (int, error) {
	var b [4]byte
	rand.Read(b[:])
	id := "run." + hex.EncodeToString(b[:])
	host := req.Name
	if host == "" {
		host = id
	}
	switch req.Network {
	case "", api.NetworkBridge, api.NetworkHost:
	default:
		return -1, fmt.Errorf("%w: network %q: want bridge or host", api.ErrInvalid, req.Network)
	}
	spec, err := n.containerSpec(ctx, id, api.SanitizeName(host), req.Image, req.Command, req.Env, req.Network == api.NetworkHost)
	if err != nil {
		return -1, err
	}
	spec.Stdout, spec.Stderr = stdout, stderr
	c, err := n.rt.Start(ctx, spec)
	if err != nil {
		return -1, err
	}
	defer c.Delete()
	done := make(chan linux.Exit, 1)
	go func() { done <- c.Wait() }()
	select {
	case ex := <-done:
		return ex.Code, nil
	case <-ctx.Done():
		c.Stop(2 * time.Second)
		ex := <-done
		return ex.Code, ctx.Err()
	}
}

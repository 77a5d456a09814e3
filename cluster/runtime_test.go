package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/agent"
	"github.com/shoal-edge/shoal/cluster/hostpath"
	"github.com/shoal-edge/shoal/runtime/image"
	"github.com/shoal-edge/shoal/runtime/monitor"
)

// fakeImages holds one image, whose rootfs is a directory of the test's.
type fakeImages struct {
	ref    string
	rootfs string
	rc     image.RunConfig
}

func (f fakeImages) Get(ref string) (image.Image, error) {
	if ref != f.ref {
		return image.Image{}, image.ErrNotFound
	}
	return image.Image{}, nil
}

func (f fakeImages) Pull(context.Context, string, image.PullOptions) (image.Image, error) {
	return image.Image{}, errors.New("no registry in this test")
}

func (f fakeImages) Rootfs(_ context.Context, ref string) (string, image.RunConfig, error) {
	if ref != f.ref {
		return "", image.RunConfig{}, image.ErrNotFound
	}
	return f.rootfs, f.rc, nil
}

// recordingMonitors records the spec of every start and starts nothing:
// what the node runtime decides is in the spec.
type recordingMonitors struct{ started []monitor.Spec }

func (m *recordingMonitors) Start(_ context.Context, s monitor.Spec) (*monitor.Handle, error) {
	m.started = append(m.started, s)
	return nil, nil
}

func (m *recordingMonitors) Adopt() ([]*monitor.Handle, error) { return nil, nil }

// The node runtime alone turns an instance into a container spec: the
// image's entrypoint and environment under the app's, named volumes made
// under the data dir, the allocation in the labels; a missing image and a
// host path the node does not allow are refused, naming the node.
func TestNodeRuntimeStartsAnInstance(t *testing.T) {
	dir := t.TempDir()
	rootfs := t.TempDir()
	imgs := fakeImages{ref: "app:1", rootfs: rootfs, rc: image.RunConfig{
		Entrypoint: []string{"/app"}, Cmd: []string{"--serve"}, Env: []string{"PATH=/bin", "MODE=image"}, WorkingDir: "/srv"}}
	mons := &recordingMonitors{}
	nr := newNodeRuntime(nodeRuntimeConfig{Node: "edge-1", DataDir: dir}, imgs, nil, mons)

	if !nr.HasImage("app:1") || nr.HasImage("other:1") {
		t.Fatal("HasImage does not follow the image store")
	}
	in := agent.Instance{
		ID: "web.0.abc", Hostname: "web-0",
		App: api.App{Name: "web", Image: "app:1", Env: map[string]string{"MODE": "app", "A": "1"},
			Volumes: []string{"data:/var/data"}, Resources: api.Resources{Memory: 64 << 20, Pids: 32}},
		Allocation: api.Allocation{App: "web", Index: 3, Version: 7},
		LogPath:    filepath.Join(dir, "logs", "web", "3.log"),
	}
	if _, err := nr.Start(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if len(mons.started) != 1 {
		t.Fatalf("monitors started %d containers, want 1", len(mons.started))
	}
	s := mons.started[0]
	if s.ID != "web.0.abc" || s.Hostname != "web-0" || s.Image != rootfs || s.Cwd != "/srv" || s.LogPath != in.LogPath {
		t.Errorf("spec = %+v", s.Spec)
	}
	if want := []string{"/app", "--serve"}; !slices.Equal(s.Args, want) {
		t.Errorf("args = %q, want %q", s.Args, want)
	}
	if want := []string{"PATH=/bin", "A=1", "MODE=app"}; !slices.Equal(s.Env, want) {
		t.Errorf("env = %q, want %q", s.Env, want)
	}
	if s.Labels[labelApp] != "web" || s.Labels[labelIndex] != "3" || s.Labels[labelVersion] != "7" {
		t.Errorf("labels = %v", s.Labels)
	}
	if s.Resources.Memory != 64<<20 || s.Resources.Pids != 32 {
		t.Errorf("resources = %+v", s.Resources)
	}
	vol := filepath.Join(dir, "volumes", "data")
	if len(s.Mounts) != 1 || s.Mounts[0].Source != vol || s.Mounts[0].Target != "/var/data" {
		t.Errorf("mounts = %+v, want the named volume %s", s.Mounts, vol)
	}
	if fi, err := os.Stat(vol); err != nil || !fi.IsDir() {
		t.Errorf("named volume not made: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(in.LogPath)); err != nil {
		t.Errorf("log directory not made: %v", err)
	}

	missing := in
	missing.App.Image = "other:1"
	_, err := nr.Start(context.Background(), missing)
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "not on node edge-1") {
		t.Errorf("start with a missing image: %v", err)
	}

	host := in
	host.App.Volumes = []string{t.TempDir() + ":/host"}
	_, err = nr.Start(context.Background(), host)
	if r := (*hostpath.Refused)(nil); !errors.As(err, &r) || r.Node != "edge-1" {
		t.Errorf("start with a host path the node does not allow: %v", err)
	}
	if len(mons.started) != 1 {
		t.Errorf("a refused start reached the monitors: %d starts", len(mons.started))
	}
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil/storetest"
	"github.com/shoal-edge/shoal/runtime/supervise"
	"github.com/shoal-edge/shoal/store"
)

// fixedView is what the leader told of every instance.
type fixedView map[string]api.InstanceStatus

func (v fixedView) observed(context.Context) (map[string]api.InstanceStatus, bool) {
	out := map[string]api.InstanceStatus{}
	for k, s := range v {
		out[k] = s
	}
	return out, true
}

// noProcesses runs nothing; its logs are under dir.
type noProcesses struct{ dir string }

func (noProcesses) Process(string, int) (supervise.Process, bool) { return nil, false }
func (p noProcesses) LogPath(app string, index int) string {
	return filepath.Join(p.dir, app, api.InstanceName(app, index))
}

// voterPeers passes requests on as a voter or refuses as a non-voter.
type voterPeers struct{ voter bool }

func (p voterPeers) isVoter(string) bool { return p.voter }
func (voterPeers) notVoter() error       { return &api.NotVoterError{Node: "a"} }
func (voterPeers) peerTransport(id, name, instance string) http.RoundTripper {
	return &http.Transport{}
}

// recordedRuns answers a one-off run with its command's length.
type recordedRuns struct{ got []api.RunRequest }

func (r *recordedRuns) run(_ context.Context, req api.RunRequest, _ io.Reader, _, _ io.Writer) (int, error) {
	r.got = append(r.got, req)
	return len(req.Command), nil
}

// The instance backend alone, over a real state file fed through the FSM:
// ps shows every allocation with the state the leader told, unknown for a
// node gossip lost (without its pid), a host-network instance at its
// node's address, and an app no node can take as a row of its own; logs
// and the way to an instance go by where it is placed; a non-voter does
// not pass a request on; a one-off run goes to the node runtime.
func TestInstanceBackendAlone(t *testing.T) {
	st, apply := storetest.Fed(t)
	apply(store.NodeFacts{Node: store.NodeRecord{Name: "a", ID: "ida", Address: "10.0.0.1", Port: 7000, Arch: goruntime.GOARCH, OS: "linux"}})
	apply(store.NodeFacts{Node: store.NodeRecord{Name: "b", ID: "idb", Address: "10.0.0.2", Port: 7001, Arch: goruntime.GOARCH, OS: "linux"}})
	apps := []api.App{
		{Name: "web", Image: "x:1", Replicas: 2, Network: api.NetworkHost},
		{Name: "edge", Image: "x:1", Replicas: 1, Placement: api.Placement{Labels: map[string]string{"site": "roof"}}},
	}
	for i := range apps {
		apps[i].Defaults()
	}
	apply(store.PutApps{Apps: apps})
	apply(store.SetAllocs{Put: []api.Allocation{
		{App: "web", Index: 0, Version: 1, Node: "a"},
		{App: "web", Index: 1, Version: 1, Node: "b"},
	}})
	view := fixedView{
		"web/0": {App: "web", Instance: "web/0", Node: "a", Version: 1, State: api.StateRunning, PID: 42},
		"web/1": {App: "web", Instance: "web/1", Node: "b", Version: 1, State: api.StateRunning, PID: 43},
	}
	logs := noProcesses{dir: t.TempDir()}
	runs := &recordedRuns{}
	b := newInstanceBackend(instanceBackendConfig{Self: identity{Name: "a", ID: "ida"}, Advertise: "10.0.0.1", CgroupParent: "shoal-test",
		State: st, View: view, Live: liveSet{"a"}, Unplaced: newUnplaced(liveSet{"a"}, st), Local: logs,
		Voters: voterPeers{voter: false}, Peers: voterPeers{}, OneOff: runs})
	ctx := context.Background()

	ps, err := b.PS(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, s := range ps {
		rows = append(rows, fmt.Sprintf("%s|%s|%s|%s|%d|%s", s.Instance, s.Node, s.State, s.IP, s.PID, s.Error))
	}
	want := []string{
		"edge/0||pending||0|cannot be placed: no node has label site=roof",
		"web/0|a|running|10.0.0.1|42|",
		"web/1|b|unknown||0|",
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("ps:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	if _, err := b.PS(ctx, "nope"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("ps of an unknown app: %v, want not found", err)
	}

	if p, err := b.LogPath(ctx, "web", 0); err != nil || p != logs.LogPath("web", 0) {
		t.Errorf("log of web/0 here: %q, %v", p, err)
	}
	if _, err := b.LogPath(ctx, "web", 1); !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "node b") {
		t.Errorf("log of web/1 on b: %v, want not found naming node b", err)
	}
	if _, err := b.LogPath(ctx, "nope", 0); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("log of an unknown app: %v, want not found", err)
	}

	var nv *api.NotVoterError
	if _, _, err := b.Where(ctx, "web", 1); !errors.As(err, &nv) {
		t.Errorf("a non-voter passes a request on: %v, want NotVoterError", err)
	}
	b.voters = voterPeers{voter: true}
	if addr, rt, err := b.Where(ctx, "web", 1); addr != "10.0.0.2:7001" || rt == nil || err != nil {
		t.Errorf("where is web/1: %q, %v, %v; want b's cluster port", addr, rt, err)
	}
	if addr, _, err := b.Where(ctx, "web", 0); addr != "" || err != nil {
		t.Errorf("where is web/0 (here): %q, %v; want \"\"", addr, err)
	}

	code, err := b.RunContainer(ctx, api.RunRequest{Image: "x:1", Command: []string{"true", "x"}}, nil, nil, nil)
	if err != nil || code != 2 || len(runs.got) != 1 {
		t.Errorf("one-off run: %d, %v after %d runs", code, err, len(runs.got))
	}
}

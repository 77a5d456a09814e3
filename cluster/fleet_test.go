package cluster

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/store"
)

// goneAs is how the members named went, as gossip saw it.
type goneAs map[string]departure

func (g goneAs) departed(name string) (departure, bool) {
	d, ok := g[name]
	return d, ok
}

// The fleet backend alone, on a real state file that a real Raft of one
// voter (a, leading) applies: status and nodes join the registry, Raft and
// gossip; a label the edge refuses is never written; a drain says which
// app it leaves without a node; forget refuses a live or unknown node and
// takes a dead one out (revoked, out of the registry), also when the
// leader's side is asked over the node protocol.
func TestFleetBackendAlone(t *testing.T) {
	st, r, w := leadingStore(t)
	ctx := context.Background()
	for _, rec := range []store.NodeRecord{
		{Name: "a", ID: "a", Address: "10.0.0.1", Arch: goruntime.GOARCH, OS: "linux"},
		{Name: "b", ID: "b", Address: "10.0.0.2", Arch: goruntime.GOARCH, OS: "linux"},
		{Name: "c", ID: "c", Address: "10.0.0.3", Arch: goruntime.GOARCH, OS: "linux"},
	} {
		if _, err := w.applyLocal(store.NodeFacts{Node: rec}, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.applyLocal(store.PutApps{Apps: []api.App{{Name: "web", Image: "x:1", Replicas: 1, Restart: api.RestartAlways}}}, time.Second); err != nil {
		t.Fatal(err)
	}
	left := time.Now().Add(-time.Minute)
	f := newFleetBackend(fleetConfig{Self: identity{Name: "a", ID: "a"}, Raft: fixedRaft{r}, State: st, Stalls: st, Live: liveSet{"a"},
		Departures: goneAs{"b": {state: api.NodeLeft, at: left}}, Writes: w, Voters: okDisk{}, Unplaced: newUnplaced(liveSet{"a"}, st)})

	s, err := f.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Node != "a" || s.Leader != "a" || s.Role != api.RoleVoter || !slices.Equal(s.Voters, []string{"a"}) || s.Health != "healthy" {
		t.Errorf("status %+v: want a leading, its only voter, healthy", s)
	}

	nodes, err := f.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	state := map[string]api.NodeState{}
	for _, n := range nodes {
		state[n.Name] = n.State
		if n.Name == "b" && (n.LastSeen == nil || !n.LastSeen.Equal(left.UTC().Truncate(time.Second))) {
			t.Errorf("node b last seen %v, want when it left (%v)", n.LastSeen, left)
		}
		if (n.Role == api.RoleVoter) != (n.Name == "a") {
			t.Errorf("node %s has role %s", n.Name, n.Role)
		}
	}
	if want := map[string]api.NodeState{"a": api.NodeAlive, "b": api.NodeLeft, "c": api.NodeDead}; !maps.Equal(state, want) {
		t.Errorf("node states %v, want %v", state, want)
	}

	if err := f.Label(ctx, "a", api.LabelRequest{Set: map[string]string{"bad key": "x"}}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("a bad label: %v, want ErrInvalid", err)
	}
	if err := f.Label(ctx, "a", api.LabelRequest{}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("no label: %v, want ErrInvalid", err)
	}
	if err := f.Label(ctx, "a", api.LabelRequest{Set: map[string]string{"site": "roof"}}); err != nil {
		t.Fatal(err)
	}
	if recs, _ := st.Nodes(); recs[0].Name != "a" || recs[0].Labels["site"] != "roof" {
		t.Errorf("after label, nodes %+v", recs)
	}

	res, err := f.Cordon(ctx, "a", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unplaced) != 1 || res.Unplaced[0].App != "web" {
		t.Errorf("draining the only live node: %+v, want web unplaced", res)
	}
	if res, err := f.Cordon(ctx, "a", false); err != nil || len(res.Unplaced) != 0 {
		t.Errorf("uncordon: %+v, %v", res, err)
	}

	if err := f.Forget(ctx, "a"); !errors.Is(err, api.ErrConflict) {
		t.Errorf("forget the live leader: %v, want ErrConflict", err)
	}
	if err := f.Forget(ctx, "nobody"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("forget an unknown node: %v, want ErrNotFound", err)
	}
	if err := f.Forget(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	f.serveForget(rec, httptest.NewRequest(http.MethodPost, "/v1/forget", strings.NewReader(`{"name":"b"}`)))
	if rec.Code != http.StatusNoContent {
		t.Errorf("forget over the node protocol: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	f.serveForget(rec, httptest.NewRequest(http.MethodPost, "/v1/forget", strings.NewReader(`{"name":"b"}`)))
	if rec.Code != http.StatusNotFound {
		t.Errorf("forget a forgotten node over the node protocol: %d %s, want 404", rec.Code, rec.Body)
	}
	for _, id := range []string{"b", "c"} {
		if !st.Revoked(id) {
			t.Errorf("forgotten node %s is not revoked", id)
		}
	}
	if recs, _ := st.Nodes(); len(recs) != 1 || recs[0].Name != "a" {
		t.Errorf("after forget the registry holds %+v, want a only", recs)
	}
}

package cluster

import (
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil/storetest"
	"github.com/shoal-edge/shoal/store"
)

// The unplaced reasons alone, over a real state file and gossip set by
// the test: an app no registered node's arch fits is unplaced and says
// why; one whose only fitting node is gone from gossip is unplaced until
// the node is back; an app any live node takes is placed.
func TestUnplacedAlone(t *testing.T) {
	st, apply := storetest.Fed(t)
	apply(store.NodeFacts{Node: store.NodeRecord{Name: "a", ID: "id-a", Address: "127.0.0.1", Arch: "amd64", OS: "linux"}})
	apply(store.NodeFacts{Node: store.NodeRecord{Name: "b", ID: "id-b", Address: "127.0.0.2", Arch: "amd64", OS: "linux",
		Labels: map[string]string{"zone": "x"}}})
	app := func(name string, p api.Placement) api.App {
		a := api.App{Name: name, Image: "busybox", Placement: p}
		a.Defaults()
		return a
	}
	apps := []api.App{
		app("anywhere", api.Placement{}),
		app("arm", api.Placement{Arch: []string{"arm64"}}),
		app("zoned", api.Placement{Labels: map[string]string{"zone": "x"}}),
	}
	gossip := &fakeMembers{changed: make(chan struct{}, 1)}
	gossip.set(gossipMember("a", nil))
	u := newUnplaced(gossip, st)

	warned := func() map[string]string {
		res := []api.ApplyResult{{Name: "anywhere"}, {Name: "arm"}, {Name: "zoned"}}
		u.warnUnplaced(res, apps)
		out := map[string]string{}
		for _, r := range res {
			out[r.Name] = r.Unplaced
		}
		return out
	}
	got := warned()
	if got["anywhere"] != "" {
		t.Errorf("anywhere unplaced: %q", got["anywhere"])
	}
	if !strings.Contains(got["arm"], "arm64") {
		t.Errorf("arm unplaced for %q, want its arch named", got["arm"])
	}
	if got["zoned"] == "" {
		t.Error("zoned placed while its only node is gone from gossip")
	}
	gossip.set(gossipMember("a", nil), gossipMember("b", nil))
	if got := warned(); got["zoned"] != "" || got["arm"] == "" {
		t.Errorf("with b back: %v, want zoned placed and arm not", got)
	}
}

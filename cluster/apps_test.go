package cluster

import (
	"context"
	"errors"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/store"
)

// leadingStore is a real state file applied by a real lone voter, a,
// which leads; its writes are the writes part over that Raft.
func leadingStore(t *testing.T) (*store.Store, *raft.Raft, *writes) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := startStoreRaft(t, st)
	return st, r, newWrites("a", fixedRaft{r}, nil, okDisk{}, okDisk{})
}

// liveSet lists the members named as alive gossip members whose ids are
// their names.
type liveSet []string

func (l liveSet) liveMembers() []member {
	var out []member
	for _, name := range l {
		out = append(out, member{Name: name, State: api.NodeAlive, Meta: nodeMeta{ID: name}})
	}
	return out
}

// The app backend alone, over a real state file written through a real
// Raft: a spec the edge refuses is never written; a write says at once
// which app no live node can take and why; scale and rm reach the state.
func TestAppBackendAlone(t *testing.T) {
	st, _, w := leadingStore(t)
	ctx := context.Background()
	if _, err := w.applyLocal(store.NodeFacts{Node: store.NodeRecord{Name: "a", ID: "a", Arch: goruntime.GOARCH, OS: "linux"}}, time.Second); err != nil {
		t.Fatal(err)
	}
	b := newAppBackend(w, st, newUnplaced(liveSet{"a"}, st))

	for name, apps := range map[string][]api.App{
		"twice":   {{Name: "dup", Image: "x:1"}, {Name: "dup", Image: "y:1"}},
		"invalid": {{Name: "Bad_Name", Image: "x:1"}},
		"too big": {{Name: "big", Image: "x:1", Env: map[string]string{"A": strings.Repeat("x", maxAppSpec)}}},
	} {
		if _, err := b.Apply(ctx, apps); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("%s: Apply = %v, want ErrInvalid", name, err)
		}
	}
	if apps, _ := st.Apps(); len(apps) != 0 {
		t.Fatalf("%d refused specs were written", len(apps))
	}

	res, err := b.Apply(ctx, []api.App{
		{Name: "web", Image: "x:1", Replicas: 2},
		{Name: "edge", Image: "x:1", Placement: api.Placement{Labels: map[string]string{"site": "roof"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	why := map[string]string{}
	for _, r := range res {
		why[r.Name] = r.Unplaced
	}
	if why["web"] != "" || !strings.Contains(why["edge"], "site=roof") {
		t.Errorf("apply results %+v: want web placeable, edge unplaced for lack of site=roof", res)
	}
	if _, err := st.App("edge"); err != nil {
		t.Errorf("an app no node can take is still written: %v", err)
	}

	if _, err := b.Scale(ctx, map[string]int{"web": -1}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("Scale(-1) = %v, want ErrInvalid", err)
	}
	if _, err := b.Scale(ctx, map[string]int{"web": 5}); err != nil {
		t.Fatal(err)
	}
	if a, _ := st.App("web"); a.Replicas != 5 {
		t.Errorf("after scale web has %d replicas, want 5", a.Replicas)
	}

	if err := b.Delete(ctx, nil); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("Delete() = %v, want ErrInvalid", err)
	}
	if err := b.Delete(ctx, []string{"web", "edge"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.App("web"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("after rm web: %v, want not found", err)
	}
}

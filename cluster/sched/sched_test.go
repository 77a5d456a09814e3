package sched

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-edge/shoal/api"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func rep(name string, n int, v uint64) api.App {
	a := api.App{Name: name, Image: "x", Replicas: n, Version: v}
	a.Defaults()
	return a
}

func alive(names ...string) []Node {
	var out []Node
	for _, n := range names {
		out = append(out, Node{Name: n, Arch: "amd64", Alive: true})
	}
	return out
}

func TestCompute(t *testing.T) {
	glob := api.App{Name: "g", Image: "x", Mode: api.ModeGlobal, Version: 5}
	glob.Defaults()
	armOnly := rep("arm", 1, 1)
	armOnly.Placement.Arch = []string{"arm64"}
	labelled := rep("lab", 1, 1)
	labelled.Placement.Labels = map[string]string{"site": "b"}

	for _, tc := range []struct {
		name string
		st   State
		want Plan
	}{
		{"spread new app", State{Apps: []api.App{rep("web", 3, 1)}, Nodes: alive("a", "b")},
			Plan{Put: []api.Allocation{{App: "web", Index: 0, Version: 1, Node: "a"}, {App: "web", Index: 1, Version: 1, Node: "b"}, {App: "web", Index: 2, Version: 1, Node: "a"}}}},
		{"steady state changes nothing", State{Apps: []api.App{rep("web", 1, 1)}, Allocs: []api.Allocation{{App: "web", Version: 1, Node: "b"}}, Nodes: alive("a", "b")},
			Plan{}},
		{"new version updates in place", State{Apps: []api.App{rep("web", 1, 2)}, Allocs: []api.Allocation{{App: "web", Version: 1, Node: "b"}}, Nodes: alive("a", "b")},
			Plan{Put: []api.Allocation{{App: "web", Version: 2, Node: "b"}}}},
		{"scale down", State{Apps: []api.App{rep("web", 1, 1)}, Allocs: []api.Allocation{{App: "web", Version: 1, Node: "a"}, {App: "web", Index: 1, Version: 1, Node: "a"}}, Nodes: alive("a")},
			Plan{Delete: []api.Allocation{{App: "web", Index: 1, Version: 1, Node: "a"}}}},
		{"deleted app", State{Allocs: []api.Allocation{{App: "old", Version: 1, Node: "a"}}, Nodes: alive("a")},
			Plan{Delete: []api.Allocation{{App: "old", Version: 1, Node: "a"}}}},
		{"no eligible node", State{Apps: []api.App{armOnly}, Nodes: alive("a")}, Plan{}},
		{"label match", State{Apps: []api.App{labelled}, Nodes: []Node{{Name: "a", Alive: true, Labels: map[string]string{"site": "a"}}, {Name: "b", Alive: true, Labels: map[string]string{"site": "b"}}}},
			Plan{Put: []api.Allocation{{App: "lab", Version: 1, Node: "b"}}}},
		{"dead within grace stays", State{Apps: []api.App{rep("web", 1, 1)}, Allocs: []api.Allocation{{App: "web", Version: 1, Node: "a"}},
			Nodes: []Node{{Name: "a", DeadSince: t0}, {Name: "b", Alive: true}}, Now: t0.Add(30 * time.Second)}, Plan{}},
		{"dead past grace moves", State{Apps: []api.App{rep("web", 1, 1)}, Allocs: []api.Allocation{{App: "web", Version: 1, Node: "a"}},
			Nodes: []Node{{Name: "a", DeadSince: t0}, {Name: "b", Alive: true}}, Now: t0.Add(61 * time.Second)},
			Plan{Put: []api.Allocation{{App: "web", Version: 1, Node: "b"}}}},
		{"cordoned node drained", State{Apps: []api.App{rep("web", 1, 1)}, Allocs: []api.Allocation{{App: "web", Version: 1, Node: "a"}},
			Nodes: []Node{{Name: "a", Alive: true, Cordoned: true}, {Name: "b", Alive: true}}},
			Plan{Put: []api.Allocation{{App: "web", Version: 1, Node: "b"}}}},
		{"global on every node, dead included", State{Apps: []api.App{glob}, Allocs: []api.Allocation{{App: "g", Index: 0, Version: 5, Node: "b"}},
			Nodes: []Node{{Name: "a", Alive: true}, {Name: "b"}, {Name: "c", Alive: true}}},
			Plan{Put: []api.Allocation{{App: "g", Index: 1, Version: 5, Node: "a"}, {App: "g", Index: 2, Version: 5, Node: "c"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Compute(tc.st)
			if d := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b []api.Allocation) bool { return cmp.Equal(len(a), len(b)) && (len(a) == 0 || cmp.Equal(a, b)) })); d != "" {
				t.Fatalf("plan (-want +got):\n%s", d)
			}
		})
	}
}

// Applying a plan and planning again must change nothing: the scheduler
// converges in one step, so the leader does not write in a loop.
func TestComputeConverges(t *testing.T) {
	st := State{Apps: []api.App{rep("a", 5, 1), rep("b", 2, 3)}, Nodes: alive("n1", "n2", "n3")}
	for round := 0; round < 2; round++ {
		p := Compute(st)
		if round == 1 {
			if !p.Empty() {
				t.Fatalf("second plan not empty: %+v", p)
			}
			return
		}
		st.Allocs = append(st.Allocs, p.Put...)
	}
}

package sched

import (
	"strings"
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
		{"no eligible node", State{Apps: []api.App{armOnly}, Nodes: alive("a")},
			Plan{Unplaced: []Unplaced{{App: "arm", Reason: "no node has arch arm64"}}}},
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

// An instance that no node can take is told with the reason, counted over
// the nodes by the first thing that keeps each out; a plan that only
// leaves instances unplaced writes nothing.
func TestUnplaced(t *testing.T) {
	north := rep("web", 2, 1)
	north.Placement.Labels = map[string]string{"zone": "north"}
	arm := rep("arm", 1, 1)
	arm.Placement.Arch = []string{"arm64"}
	twoLabels := rep("two", 1, 1)
	twoLabels.Placement.Labels = map[string]string{"zone": "north", "disk": "ssd"}
	multiArch := rep("ma", 1, 1)
	multiArch.Placement.Arch = []string{"arm64", "arm"}
	glob := api.App{Name: "g", Image: "x", Mode: api.ModeGlobal, Version: 5, Placement: api.Placement{Labels: map[string]string{"zone": "north"}}}
	glob.Defaults()
	node := func(name string, alive, cordoned bool, labels ...string) Node {
		n := Node{Name: name, Arch: "amd64", Alive: alive, Cordoned: cordoned, Labels: map[string]string{}}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			n.Labels[k] = v
		}
		return n
	}
	for _, tc := range []struct {
		name   string
		st     State
		want   []Unplaced
		delete int
	}{
		{"no node has the label", State{Apps: []api.App{north}, Nodes: []Node{node("a", true, false, "zone=south"), node("b", true, false)}},
			[]Unplaced{{"web", 0, "no node has label zone=north"}, {"web", 1, "no node has label zone=north"}}, 0},
		{"drained and wrong arch", State{Apps: []api.App{arm}, Nodes: []Node{node("a", true, true), node("b", true, true), node("c", true, false)}},
			[]Unplaced{{"arm", 0, "2 nodes drained, 1 lacks arch arm64"}}, 0},
		{"the only node drained", State{Apps: []api.App{rep("web", 1, 1)}, Allocs: []api.Allocation{{App: "web", Version: 1, Node: "a"}}, Nodes: []Node{node("a", true, true)}},
			[]Unplaced{{"web", 0, "1 node drained"}}, 1},
		{"every node down", State{Apps: []api.App{rep("web", 1, 1)}, Nodes: []Node{node("a", false, false), node("b", false, false)}},
			[]Unplaced{{"web", 0, "2 nodes down"}}, 0},
		{"one reason each", State{Apps: []api.App{north}, Nodes: []Node{node("a", true, true, "zone=north"), node("b", true, false), node("c", false, false, "zone=north")}},
			[]Unplaced{{"web", 0, "1 node drained, 1 lacks label zone=north, 1 down"}, {"web", 1, "1 node drained, 1 lacks label zone=north, 1 down"}}, 0},
		{"labels told in key order", State{Apps: []api.App{twoLabels}, Nodes: []Node{node("a", true, false), node("b", true, false, "disk=ssd"), node("c", true, false, "disk=ssd")}},
			[]Unplaced{{"two", 0, "1 node lacks label disk=ssd, 2 lack label zone=north"}}, 0},
		{"any of several arches", State{Apps: []api.App{multiArch}, Nodes: alive("a")},
			[]Unplaced{{"ma", 0, "no node has arch arm64 or arm"}}, 0},
		{"no nodes at all", State{Apps: []api.App{rep("web", 1, 1)}},
			[]Unplaced{{"web", 0, "the cluster has no nodes"}}, 0},
		{"one kept on a node dead within grace, the other unplaced", State{Apps: []api.App{rep("web", 2, 1)},
			Allocs: []api.Allocation{{App: "web", Version: 1, Node: "a"}},
			Nodes:  []Node{{Name: "a", DeadSince: t0}}, Now: t0.Add(time.Second)},
			[]Unplaced{{"web", 1, "1 node down"}}, 0},
		{"global with no eligible node", State{Apps: []api.App{glob}, Nodes: []Node{node("a", true, false, "zone=south")}},
			[]Unplaced{{"g", 0, "no node has label zone=north"}}, 0},
		{"global stays on a dead eligible node", State{Apps: []api.App{glob}, Nodes: []Node{node("a", false, false, "zone=north")}},
			nil, 0},
		{"global on a drained node only", State{Apps: []api.App{glob}, Nodes: []Node{node("a", true, true, "zone=north")}},
			[]Unplaced{{"g", 0, "1 node drained"}}, 0},
		{"placed: nothing to tell", State{Apps: []api.App{north}, Nodes: []Node{node("a", true, false, "zone=north")}}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Compute(tc.st)
			if d := cmp.Diff(tc.want, got.Unplaced); d != "" {
				t.Errorf("unplaced (-want +got):\n%s", d)
			}
			if len(got.Delete) != tc.delete {
				t.Errorf("deletes %v, want %d", got.Delete, tc.delete)
			}
			if tc.delete == 0 && len(tc.want) > 0 && !got.Empty() {
				t.Errorf("a plan that only leaves instances unplaced is not empty: %+v", got)
			}
		})
	}
}

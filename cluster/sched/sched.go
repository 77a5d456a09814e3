// Package sched owns placement: a pure function from the desired state (apps,
// current allocations, nodes and their liveness) to the allocations to write
// and delete. It does no I/O and reads no clock; the leader's loop feeds it
// and commits its plan through Raft.
package sched

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-edge/shoal/api"
)

// Node is what placement needs to know of a node.
type Node struct {
	Name     string
	Arch     string
	Labels   map[string]string
	Alive    bool
	Cordoned bool
	// DeadSince is when gossip last saw the node alive; zero when alive.
	DeadSince time.Time
}

// State is the input of Plan.
type State struct {
	Apps   []api.App
	Allocs []api.Allocation
	Nodes  []Node
	Now    time.Time
}

// Plan is the change to commit, and what it leaves unplaced.
type Plan struct {
	Put    []api.Allocation
	Delete []api.Allocation
	// Unplaced are the instances no node can take now, with the reason.
	// They are not written anywhere: whoever shows them computes them
	// again from its replica, so a cluster that cannot place an app does
	// not write to Raft about it.
	Unplaced []Unplaced
}

// Unplaced is an instance that has no node, and why. A global app with no
// eligible node at all is one Unplaced of index 0: it would have that
// instance on the first node that qualified.
type Unplaced struct {
	App    string
	Index  int
	Reason string
}

// Empty reports whether the plan changes anything that is stored;
// Unplaced does not count.
func (p Plan) Empty() bool { return len(p.Put) == 0 && len(p.Delete) == 0 }

// Compute places every app. Existing allocations stay where they are while
// their node is eligible, so a new plan never moves a healthy instance; an
// allocation of an old app version is updated in place (same node, same
// index) and the node's agent replaces the container.
func Compute(st State) Plan {
	var plan Plan
	byApp := map[string][]api.Allocation{}
	for _, a := range st.Allocs {
		byApp[a.App] = append(byApp[a.App], a)
	}
	nodes := map[string]Node{}
	for _, n := range st.Nodes {
		nodes[n.Name] = n
	}
	load := map[string]int{}
	for _, a := range st.Allocs {
		load[a.Node]++
	}
	apps := map[string]bool{}
	for _, app := range st.Apps {
		apps[app.Name] = true
		var p Plan
		if app.Mode == api.ModeGlobal {
			p = global(app, byApp[app.Name], st.Nodes)
		} else {
			p = replicated(app, byApp[app.Name], nodes, st.Nodes, load, st.Now)
		}
		plan.Put = append(plan.Put, p.Put...)
		plan.Delete = append(plan.Delete, p.Delete...)
		plan.Unplaced = append(plan.Unplaced, p.Unplaced...)
	}
	for _, name := range slices.Sorted(maps.Keys(byApp)) {
		if !apps[name] {
			plan.Delete = append(plan.Delete, byApp[name]...)
		}
	}
	return plan
}

func eligible(app api.App, n Node) bool { return refusal(app, n, false) == (refused{}) }

// refused is the first thing that keeps a node from an app: its kind
// (the order in which reasons are told) and what the app asks for.
type refused struct {
	kind int
	what string
}

const (
	_ = iota
	refDrained
	refLabel
	refArch
	refDown
)

// refusal says why n cannot take an instance of app; the zero value when
// it can. needAlive: a replicated instance needs a live node, a global one
// stays with its node.
func refusal(app api.App, n Node, needAlive bool) refused {
	if n.Cordoned {
		return refused{kind: refDrained}
	}
	for _, k := range slices.Sorted(maps.Keys(app.Placement.Labels)) {
		if v, ok := n.Labels[k]; !ok || v != app.Placement.Labels[k] {
			return refused{kind: refLabel, what: k + "=" + app.Placement.Labels[k]}
		}
	}
	if len(app.Placement.Arch) > 0 && !slices.Contains(app.Placement.Arch, n.Arch) {
		return refused{kind: refArch, what: strings.Join(app.Placement.Arch, " or ")}
	}
	if needAlive && !n.Alive {
		return refused{kind: refDown}
	}
	return refused{}
}

// whyNot tells an operator why no node can take an instance of app: each
// node counted under the first thing that keeps it out, as "no node has
// label zone=north" or "2 nodes drained, 1 lacks arch arm64".
func whyNot(app api.App, all []Node, needAlive bool) string {
	if len(all) == 0 {
		return "the cluster has no nodes"
	}
	count := map[refused]int{}
	for _, n := range all {
		count[refusal(app, n, needAlive)]++
	}
	reasons := slices.SortedFunc(maps.Keys(count), func(a, b refused) int {
		if a.kind != b.kind {
			return a.kind - b.kind
		}
		return strings.Compare(a.what, b.what)
	})
	if len(reasons) == 1 && (reasons[0].kind == refLabel || reasons[0].kind == refArch) {
		what := "label"
		if reasons[0].kind == refArch {
			what = "arch"
		}
		return fmt.Sprintf("no node has %s %s", what, reasons[0].what)
	}
	parts := make([]string, 0, len(reasons))
	for i, r := range reasons {
		n := count[r]
		subject := strconv.Itoa(n)
		if i == 0 {
			subject += " node"
			if n > 1 {
				subject += "s"
			}
		}
		verb := ""
		switch r.kind {
		case refDrained:
			verb = "drained"
		case refLabel:
			verb = plural(n, "lacks", "lack") + " label " + r.what
		case refArch:
			verb = plural(n, "lacks", "lack") + " arch " + r.what
		case refDown:
			verb = "down"
		}
		parts = append(parts, subject+" "+verb)
	}
	return strings.Join(parts, ", ")
}

func plural(n int, one, more string) string {
	if n == 1 {
		return one
	}
	return more
}

func replicated(app api.App, cur []api.Allocation, nodes map[string]Node, all []Node, load map[string]int, now time.Time) Plan {
	var p Plan
	have := map[int]api.Allocation{}
	for _, a := range cur {
		have[a.Index] = a
	}
	for i := 0; i < app.Replicas; i++ {
		a, ok := have[i]
		if ok {
			n, known := nodes[a.Node]
			keep := known && eligible(app, n) && (n.Alive || now.Sub(n.DeadSince) < app.RescheduleAfter.D())
			if keep {
				if a.Version != app.Version {
					a.Version = app.Version
					p.Put = append(p.Put, a)
				}
				continue
			}
			load[a.Node]--
		}
		target, found := leastLoaded(app, all, load)
		if !found {
			if ok {
				p.Delete = append(p.Delete, a)
			}
			p.Unplaced = append(p.Unplaced, Unplaced{App: app.Name, Index: i, Reason: whyNot(app, all, true)})
			continue
		}
		load[target]++
		p.Put = append(p.Put, api.Allocation{App: app.Name, Index: i, Version: app.Version, Node: target})
	}
	for _, idx := range slices.Sorted(maps.Keys(have)) {
		if idx >= app.Replicas {
			p.Delete = append(p.Delete, have[idx])
			load[have[idx].Node]--
		}
	}
	return p
}

// leastLoaded spreads instances: the alive eligible node with the fewest
// allocations, ties broken by name so every leader plans alike.
func leastLoaded(app api.App, all []Node, load map[string]int) (string, bool) {
	cands := make([]Node, 0, len(all))
	for _, n := range all {
		if n.Alive && eligible(app, n) {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return "", false
	}
	sort.Slice(cands, func(i, j int) bool {
		li, lj := load[cands[i].Name], load[cands[j].Name]
		if li != lj {
			return li < lj
		}
		return cands[i].Name < cands[j].Name
	})
	return cands[0].Name, true
}

// global keeps one instance on every eligible node, alive or not: a global
// instance stays with its node and returns with it.
func global(app api.App, cur []api.Allocation, all []Node) Plan {
	var p Plan
	byNode := map[string]api.Allocation{}
	used := map[int]bool{}
	for _, a := range cur {
		if _, dup := byNode[a.Node]; dup {
			p.Delete = append(p.Delete, a)
			continue
		}
		byNode[a.Node] = a
		used[a.Index] = true
	}
	want := map[string]bool{}
	next := 0
	for _, n := range all {
		if !eligible(app, n) {
			continue
		}
		want[n.Name] = true
		if a, ok := byNode[n.Name]; ok {
			if a.Version != app.Version {
				a.Version = app.Version
				p.Put = append(p.Put, a)
			}
			continue
		}
		for used[next] {
			next++
		}
		used[next] = true
		p.Put = append(p.Put, api.Allocation{App: app.Name, Index: next, Version: app.Version, Node: n.Name})
	}
	for _, name := range slices.Sorted(maps.Keys(byNode)) {
		if !want[name] {
			p.Delete = append(p.Delete, byNode[name])
		}
	}
	if len(want) == 0 {
		p.Unplaced = append(p.Unplaced, Unplaced{App: app.Name, Index: 0, Reason: whyNot(app, all, false)})
	}
	return p
}

package cluster

import (
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/sched"
	"github.com/shoal-edge/shoal/store"
)

// unplaced tells, on this node's replica and gossip view, which instances
// of apps no node can take now, and why. Nothing keeps the answer: it is
// computed again on every read (`ps`, `apply`), so that an app that
// cannot be placed costs no Raft write, however long it waits. The
// leader's own plans are alike, so every node tells the same reasons
// while gossip agrees. Safe for concurrent use: it keeps no state.
type unplaced struct {
	live  liveGossip
	state stateSnapshot
}

// liveGossip are the live gossip members: alive or suspect, not revoked.
type liveGossip interface {
	liveMembers() []member
}

// stateSnapshot is the replicated state, read at once.
type stateSnapshot interface {
	Snapshot() (store.State, error)
}

var (
	_ liveGossip    = (*gossipUpkeep)(nil)
	_ stateSnapshot = (*store.Store)(nil)
)

func newUnplaced(live liveGossip, state stateSnapshot) *unplaced {
	return &unplaced{live: live, state: state}
}

// unplaceable asks the scheduler which instances of apps no node of recs
// can take now, and why.
func (u *unplaced) unplaceable(apps []api.App, allocs []api.Allocation, recs []store.NodeRecord) []sched.Unplaced {
	live := map[string]bool{}
	for _, m := range u.live.liveMembers() {
		live[m.Name] = true
	}
	now := time.Now()
	in := sched.State{Apps: apps, Allocs: allocs, Now: now}
	for _, r := range recs {
		sn := sched.Node{Name: r.Name, Arch: r.Arch, Labels: r.Labels, Alive: live[r.Name], Cordoned: r.Cordoned}
		if !sn.Alive {
			// Within its grace: how long a node has been gone is the
			// leader's to judge, and an instance it keeps is placed.
			sn.DeadSince = now
		}
		in.Nodes = append(in.Nodes, sn)
	}
	return sched.Compute(in).Unplaced
}

// warnUnplaced fills each result's Unplaced with why its app cannot be
// placed now, if it cannot: the write is done, and the operator hears at
// once that nothing will run.
func (u *unplaced) warnUnplaced(res []api.ApplyResult, apps []api.App) {
	st, err := u.state.Snapshot()
	if err != nil {
		return // the write succeeded; the warning is a courtesy
	}
	why := map[string]string{}
	for _, un := range u.unplaceable(apps, st.Allocs, st.Nodes) {
		if why[un.App] == "" {
			why[un.App] = un.Reason
		}
	}
	for i := range res {
		res[i].Unplaced = why[res[i].Name]
	}
}

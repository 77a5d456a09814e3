package cluster

import (
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/sched"
	"github.com/shoal-edge/shoal/store"
)

// unplaceable asks the scheduler, on this node's replica and the members
// its gossip sees live, which instances of apps no node can take now, and
// why. Nothing keeps the answer: it is computed again on every read (`ps`,
// `apply`), so that an app that cannot be placed costs no Raft write,
// however long it waits.
// The leader's own plans are alike, so every node tells the same reasons
// while gossip agrees.
func unplaceable(members []member, apps []api.App, allocs []api.Allocation, recs []store.NodeRecord) []sched.Unplaced {
	live := map[string]bool{}
	for _, m := range members {
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

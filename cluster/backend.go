package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/runtime/cgroup"
	"github.com/shoal-edge/shoal/store"
)

// writeTimeout bounds a write: without a leader it fails instead of hanging.
const writeTimeout = 5 * time.Second

// Status answers `shoal status` from this node's view.
func (n *Node) Status(ctx context.Context) (api.ClusterStatus, error) {
	r := n.raft.r()
	st := api.ClusterStatus{Node: n.id.Name, State: r.State().String()}
	st.ClusterID, _ = n.store.ClusterID()
	stats := r.Stats()
	fmt.Sscan(stats["term"], &st.Term)
	fmt.Sscan(stats["commit_index"], &st.CommitIndex)
	st.AppliedIdx = n.store.AppliedIndex()
	names := n.namesByID()
	_, leaderID := r.LeaderWithID()
	st.Leader = names[string(leaderID)]
	st.Role = api.RoleNonVoter
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				name := names[string(s.ID)]
				if name == "" {
					name = string(s.ID)
				}
				st.Voters = append(st.Voters, name)
				if string(s.ID) == n.id.ID {
					st.Role = api.RoleVoter
				}
			}
		}
	}
	slices.Sort(st.Voters)
	unreachable := n.unreachableVoters(r)
	st.Stale = r.State() != raft.Leader && (leaderID == "" || time.Since(r.LastContact()) > 5*time.Second)
	stall, stalled := n.store.Stall()
	switch {
	case stalled:
		st.Health = n.stallHealth(stall)
	case leaderID == "":
		st.Health = "no leader: writes are refused; running containers keep running"
	case st.Stale:
		st.Health = "stale: no contact with the leader"
	case len(unreachable) > 0:
		st.Health = "degraded: voters unreachable: " + strings.Join(unreachable, ", ")
	default:
		st.Health = "healthy"
	}
	return st, nil
}

// unreachableVoters are the voters this node's gossip does not see alive,
// as "name (state)": suspect, dead, left, or absent when gossip never saw
// them since this node started.
func (n *Node) unreachableVoters(r *raft.Raft) []string {
	f := r.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	live := map[string]member{}
	for _, m := range n.liveMembers() {
		live[m.Meta.ID] = m
	}
	names := n.namesByID()
	var out []string
	for _, s := range f.Configuration().Servers {
		id := string(s.ID)
		if s.Suffrage != raft.Voter || id == n.id.ID {
			continue
		}
		name := names[id]
		if name == "" {
			name = id
		}
		state := api.NodeState("absent")
		if m, ok := live[id]; ok {
			state = m.State
		} else if d, ok := n.members.departed(name); ok {
			state = d.state
		}
		if state != api.NodeAlive {
			out = append(out, fmt.Sprintf("%s (%s)", name, state))
		}
	}
	slices.Sort(out)
	return out
}

// namesByID maps Raft server ids (node ids) to node names.
func (n *Node) namesByID() map[string]string {
	out := map[string]string{n.id.ID: n.id.Name}
	recs, _ := n.store.Nodes()
	for _, r := range recs {
		out[r.ID] = r.Name
	}
	for _, m := range n.liveMembers() {
		out[m.Meta.ID] = m.Name
	}
	return out
}

// Nodes answers `shoal nodes`.
func (n *Node) Nodes(ctx context.Context) ([]api.Node, error) {
	st, err := n.store.Snapshot()
	if err != nil {
		return nil, err
	}
	gossip := map[string]member{}
	for _, m := range n.liveMembers() {
		gossip[m.Name] = m
	}
	voters := map[string]bool{}
	if f := n.raft.r().GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			voters[string(s.ID)] = s.Suffrage == raft.Voter
		}
	}
	count := map[string]int{}
	for _, a := range st.Allocs {
		count[a.Node]++
	}
	var out []api.Node
	seen := map[string]bool{}
	add := func(rec store.NodeRecord) {
		seen[rec.Name] = true
		nd := api.Node{Name: rec.Name, ID: rec.ID, Address: rec.Address, Arch: rec.Arch, OS: rec.OS,
			Labels: rec.Labels, Cordoned: rec.Cordoned, State: api.NodeDead, Role: api.RoleNonVoter, Instances: count[rec.Name]}
		if nd.Labels == nil {
			nd.Labels = map[string]string{}
		}
		if m, ok := gossip[rec.Name]; ok {
			nd.State, nd.Address = m.State, m.Addr
			now := time.Now().UTC().Truncate(time.Second)
			nd.LastSeen = &now
		} else if d, ok := n.members.departed(rec.Name); ok {
			at := d.at.UTC().Truncate(time.Second)
			nd.State, nd.LastSeen = d.state, &at
		}
		if voters[rec.ID] {
			nd.Role = api.RoleVoter
		}
		out = append(out, nd)
	}
	for _, rec := range st.Nodes {
		add(rec)
	}
	// Members the leader has not registered yet still show.
	for _, m := range gossip {
		if !seen[m.Name] {
			add(store.NodeRecord{Name: m.Name, ID: m.Meta.ID, Address: m.Addr, Arch: m.Meta.Arch, OS: m.Meta.OS})
		}
	}
	slices.SortFunc(out, func(a, b api.Node) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Apply creates or updates apps.
func (n *Node) Apply(ctx context.Context, apps []api.App) ([]api.ApplyResult, error) {
	seen := map[string]bool{}
	for i := range apps {
		if seen[apps[i].Name] {
			return nil, fmt.Errorf("%w: app %q is given twice", api.ErrInvalid, apps[i].Name)
		}
		seen[apps[i].Name] = true
		// Every node keeps every spec, and every version an instance
		// still runs: a spec is small, or it is a mistake.
		if b, err := json.Marshal(apps[i]); err != nil || len(b) > maxAppSpec {
			return nil, fmt.Errorf("%w: app %q: its spec is %d bytes encoded, at most %d", api.ErrInvalid, apps[i].Name, len(b), maxAppSpec)
		}
		apps[i].Defaults()
		if err := apps[i].Validate(); err != nil {
			return nil, fmt.Errorf("%w: app %q: %v", api.ErrInvalid, apps[i].Name, err)
		}
		if err := apps[i].CheckSupported(); err != nil {
			return nil, fmt.Errorf("%w: app %q: %v", api.ErrInvalid, apps[i].Name, err)
		}
	}
	var res []api.ApplyResult
	if err := n.writes.write(ctx, store.PutApps{Apps: apps}, &res); err != nil {
		return nil, err
	}
	n.unplaced.warnUnplaced(res, apps)
	return res, nil
}

// maxAppSpec bounds one app's spec, encoded.
const maxAppSpec = 256 << 10

// Delete removes apps; their containers stop on every node.
func (n *Node) Delete(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: no app named", api.ErrInvalid)
	}
	return n.writes.write(ctx, store.DeleteApps{Names: names}, nil)
}

// Scale sets the replica counts of replicated apps, all or none.
func (n *Node) Scale(ctx context.Context, replicas map[string]int) ([]api.ApplyResult, error) {
	if len(replicas) == 0 {
		return nil, fmt.Errorf("%w: no app to scale", api.ErrInvalid)
	}
	for app, r := range replicas {
		if r < 0 {
			return nil, fmt.Errorf("%w: %s=%d: replicas cannot be negative", api.ErrInvalid, app, r)
		}
	}
	var res []api.ApplyResult
	if err := n.writes.write(ctx, store.Scale{Replicas: replicas}, &res); err != nil {
		return nil, err
	}
	var apps []api.App
	for _, r := range res {
		// This replica may not hold the write yet: the spec is, with the
		// count just set.
		if a, err := n.store.App(r.Name); err == nil {
			a.Replicas = replicas[r.Name]
			apps = append(apps, a)
		}
	}
	n.unplaced.warnUnplaced(res, apps)
	return res, nil
}

// PS lists instances: every allocation, with its observed state from the
// node that runs it (through the leader), this node's own always first-hand.
func (n *Node) PS(ctx context.Context, app string) ([]api.InstanceStatus, error) {
	st, err := n.store.Snapshot()
	if err != nil {
		return nil, err
	}
	allocs := st.Allocs
	observed, known := n.observed(ctx)
	live := map[string]bool{}
	for _, m := range n.liveMembers() {
		live[m.Name] = true
	}
	if app != "" {
		if _, err := n.store.App(app); err != nil {
			return nil, err
		}
	}
	var out []api.InstanceStatus
	for _, a := range allocs {
		if app != "" && a.App != app {
			continue
		}
		s, ok := observed[a.Instance()]
		if !ok || s.Node != a.Node {
			s = api.InstanceStatus{App: a.App, Instance: a.Instance(), Node: a.Node, Version: a.Version, State: api.StatePending}
			if !known && a.Node != n.id.Name {
				s.State = api.StateUnknown
			}
		}
		// A node that is down reports nothing: what it last said, or
		// nothing at all (a new leader never heard it), is not news.
		if a.Node != n.id.Name && !live[a.Node] {
			s.State = api.StateUnknown
		}
		s.IP = a.IP
		if s.Node == n.id.Name {
			if s.IP == "" {
				s.IP = n.instanceIP(a.App)
			}
			n.usage(&s, a)
		} else {
			// A pid is a process of the device that runs the instance:
			// on this one it would name some other process.
			s.PID = 0
		}
		out = append(out, s)
	}
	// Instances no node can take have no allocation: without these rows
	// an app that cannot be placed would not show at all.
	placed := map[string]bool{}
	for _, a := range allocs {
		placed[a.Instance()] = true
	}
	version := map[string]uint64{}
	for _, a := range st.Apps {
		version[a.Name] = a.Version
	}
	for _, u := range n.unplaced.unplaceable(st.Apps, allocs, st.Nodes) {
		if (app != "" && u.App != app) || placed[api.InstanceName(u.App, u.Index)] {
			continue
		}
		out = append(out, api.InstanceStatus{App: u.App, Instance: api.InstanceName(u.App, u.Index), Version: version[u.App],
			State: api.StatePending, Error: "cannot be placed: " + u.Reason})
	}
	slices.SortStableFunc(out, func(a, b api.InstanceStatus) int {
		if c := strings.Compare(a.App, b.App); c != 0 {
			return c
		}
		return instanceIndex(a.Instance) - instanceIndex(b.Instance)
	})
	return out, nil
}

// instanceIndex is the index of an instance name app/index.
func instanceIndex(instance string) int {
	i, _ := strconv.Atoi(instance[strings.LastIndexByte(instance, '/')+1:])
	return i
}

// instanceIP is the address an instance is reached at until the bridge
// network gives each its own: host-network instances share the node's.
func (n *Node) instanceIP(app string) string {
	a, err := n.store.App(app)
	if err == nil && a.Network == api.NetworkHost {
		return n.advertise
	}
	return ""
}

// Where is the cluster-port address of the node that runs app/index, and
// the way to reach its API; "" when it is this node or the instance is not
// placed.
func (n *Node) Where(ctx context.Context, app string, index int) (string, http.RoundTripper, error) {
	allocs, err := n.store.Allocations()
	if err != nil {
		return "", nil, err
	}
	for _, a := range allocs {
		if a.App != app || a.Index != index || a.Node == n.id.Name {
			continue
		}
		// The other node admits only voters and the admin credential.
		if !n.trust.isVoter(n.id.ID) {
			return "", nil, n.trust.notVoter()
		}
		recs, err := n.store.Nodes()
		if err != nil {
			return "", nil, err
		}
		for _, r := range recs {
			if r.Name == a.Node && r.Address != "" && r.Port != 0 {
				return net.JoinHostPort(r.Address, strconv.Itoa(r.Port)), n.peerTransport(r.ID, r.Name, a.Instance()), nil
			}
		}
	}
	return "", nil, nil
}

// LogPath finds the log of app/index on this node.
func (n *Node) LogPath(ctx context.Context, app string, index int) (string, error) {
	allocs, err := n.store.Allocations()
	if err != nil {
		return "", err
	}
	for _, a := range allocs {
		if a.App == app && a.Index == index {
			if a.Node != n.id.Name {
				return "", fmt.Errorf("%s runs on node %s: ask that node (shoal --data-dir or --server): %w", a.Instance(), a.Node, api.ErrNotFound)
			}
			return n.agent.LogPath(app, index), nil
		}
	}
	if _, err := n.store.App(app); errors.Is(err, api.ErrNotFound) {
		return "", err
	}
	return "", fmt.Errorf("instance %s: %w", api.InstanceName(app, index), api.ErrNotFound)
}

// usage adds a running instance's CPU time and memory from its cgroup.
func (n *Node) usage(s *api.InstanceStatus, a api.Allocation) {
	p, ok := n.agent.Process(a.App, a.Index)
	if !ok {
		return
	}
	h, ok := p.(interface{ ID() string })
	if !ok {
		return
	}
	cg, err := cgroup.Load(n.cgroupParent(), h.ID())
	if err != nil {
		return
	}
	if st, err := cg.Stats(); err == nil {
		s.CPUSeconds = float64(st.CPUNanos) / 1e9
		s.MemoryBytes = st.MemoryBytes
	}
}

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/apiserver"
	"github.com/shoal-edge/shoal/cluster/sched"
	"github.com/shoal-edge/shoal/store"
)

// fleetBackend answers the API's commands about the cluster's nodes
// (apiserver.Fleet): `shoal status`, `nodes`, `label`, `drain` and
// `forget`, with the leader's side of forget (POST /v1/forget) and the
// removal of a node that leave uses too (removeNode).
type fleetBackend struct {
	self     identity
	raft     runningRaft
	state    fleetState
	live     liveGossip
	gone     departures
	writes   leaderWrites
	leader   leaderCaller
	voters   voterNamer
	unplaced unplacedReasons
	stalls   stallReporter
	dataDir  string
	log      *slog.Logger
}

// fleetConfig is what the fleet backend needs.
type fleetConfig struct {
	Self identity
	Raft runningRaft
	// State is the registry, the cluster's id and how far this replica
	// has applied the log.
	State      fleetState
	Live       liveGossip
	Departures departures
	Writes     leaderWrites
	// Leader calls the leader over the node protocol (forget on a
	// follower); Voters names the voters when it refuses this node.
	Leader   leaderCaller
	Voters   voterNamer
	Unplaced unplacedReasons
	// Stalls says whether the state file is stuck on an entry it cannot
	// take; DataDir is where that disk is, for status's advice.
	Stalls  stallReporter
	DataDir string
	Logger  *slog.Logger
}

// fleetState is what the fleet backend reads of this replica.
type fleetState interface {
	ClusterID() (string, error)
	AppliedIndex() uint64
	Nodes() ([]store.NodeRecord, error)
	NodeRecord(name string) (store.NodeRecord, bool, error)
	Snapshot() (store.State, error)
}

// stallReporter says whether the state file is stuck on a log entry it
// cannot take (store.FSM).
type stallReporter interface {
	Stall() (store.Stall, bool)
}

// departures says how and when a member that is no longer live went
// (members.departed).
type departures interface {
	departed(name string) (departure, bool)
}

// leaderWrites commits commands: on the leader wherever it is (write), or
// on this node, which must lead (applyLocal).
type leaderWrites interface {
	commandWriter
	localWriter
}

// unplacedReasons says which instances of apps no node can take now, and
// why (unplaced).
type unplacedReasons interface {
	unplaceable(apps []api.App, allocs []api.Allocation, recs []store.NodeRecord) []sched.Unplaced
}

var (
	_ apiserver.Fleet = (*fleetBackend)(nil)
	_ fleetState      = (*store.Store)(nil)
	_ stallReporter   = (*store.Store)(nil)
	_ departures      = (*members)(nil)
	_ leaderWrites    = (*writes)(nil)
	_ unplacedReasons = (*unplaced)(nil)
)

func newFleetBackend(cfg fleetConfig) *fleetBackend {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &fleetBackend{self: cfg.Self, raft: cfg.Raft, state: cfg.State, live: cfg.Live, gone: cfg.Departures,
		writes: cfg.Writes, leader: cfg.Leader, voters: cfg.Voters, unplaced: cfg.Unplaced, stalls: cfg.Stalls, dataDir: cfg.DataDir, log: cfg.Logger}
}

// Status answers `shoal status` from this node's view; `shoal up` prints
// it once the node is up.
func (n *Node) Status(ctx context.Context) (api.ClusterStatus, error) { return n.fleet.Status(ctx) }

// Status: see Node.Status.
func (b *fleetBackend) Status(ctx context.Context) (api.ClusterStatus, error) {
	r := b.raft.r()
	st := api.ClusterStatus{Node: b.self.Name, State: r.State().String()}
	st.ClusterID, _ = b.state.ClusterID()
	stats := r.Stats()
	fmt.Sscan(stats["term"], &st.Term)
	fmt.Sscan(stats["commit_index"], &st.CommitIndex)
	st.AppliedIdx = b.state.AppliedIndex()
	names := b.namesByID()
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
				if string(s.ID) == b.self.ID {
					st.Role = api.RoleVoter
				}
			}
		}
	}
	slices.Sort(st.Voters)
	unreachable := b.unreachableVoters(r)
	st.Stale = r.State() != raft.Leader && (leaderID == "" || time.Since(r.LastContact()) > 5*time.Second)
	stall, stalled := b.stalls.Stall()
	switch {
	case stalled:
		st.Health = stallHealth(b.dataDir, stall)
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
func (b *fleetBackend) unreachableVoters(r *raft.Raft) []string {
	f := r.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	live := map[string]member{}
	for _, m := range b.live.liveMembers() {
		live[m.Meta.ID] = m
	}
	names := b.namesByID()
	var out []string
	for _, s := range f.Configuration().Servers {
		id := string(s.ID)
		if s.Suffrage != raft.Voter || id == b.self.ID {
			continue
		}
		name := names[id]
		if name == "" {
			name = id
		}
		state := api.NodeState("absent")
		if m, ok := live[id]; ok {
			state = m.State
		} else if d, ok := b.gone.departed(name); ok {
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
func (b *fleetBackend) namesByID() map[string]string {
	out := map[string]string{b.self.ID: b.self.Name}
	recs, _ := b.state.Nodes()
	for _, r := range recs {
		out[r.ID] = r.Name
	}
	for _, m := range b.live.liveMembers() {
		out[m.Meta.ID] = m.Name
	}
	return out
}

// Nodes answers `shoal nodes`.
func (b *fleetBackend) Nodes(ctx context.Context) ([]api.Node, error) {
	st, err := b.state.Snapshot()
	if err != nil {
		return nil, err
	}
	gossip := map[string]member{}
	for _, m := range b.live.liveMembers() {
		gossip[m.Name] = m
	}
	voters := map[string]bool{}
	if f := b.raft.r().GetConfiguration(); f.Error() == nil {
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
		} else if d, ok := b.gone.departed(rec.Name); ok {
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
	slices.SortFunc(out, func(x, y api.Node) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// Label sets and removes a node's labels.
func (b *fleetBackend) Label(ctx context.Context, node string, req api.LabelRequest) error {
	for k, v := range req.Set {
		if err := api.ValidLabel(k, v); err != nil {
			return fmt.Errorf("%w: %v", api.ErrInvalid, err)
		}
	}
	if len(req.Set) == 0 && len(req.Remove) == 0 {
		return fmt.Errorf("%w: no label to set or remove", api.ErrInvalid)
	}
	if err := b.checkJoined(node, "label"); err != nil {
		return err
	}
	return b.unregistered(node, b.writes.write(ctx, store.SetLabels{Node: node, Set: req.Set, Remove: req.Remove}, nil))
}

// checkJoined refuses to label or drain a name that no node has joined
// under, whose only record is the settings a restored backup keeps for
// it: the write would go through and change nothing anyone sees (nodes
// does not list the name), and the user would take it for done.
func (b *fleetBackend) checkJoined(node, verb string) error {
	rec, ok, err := b.state.NodeRecord(node)
	if err != nil || !ok || rec.Joined() {
		return err // no record: the state machine says not found
	}
	return fmt.Errorf("node %q: %w: no node has joined the cluster under that name; a restored backup keeps labels and a drain for it, which a node takes when it joins under it: %s it once it has joined (shoal nodes lists it then)",
		node, api.ErrNotFound, verb)
}

// unregistered explains the state machine's not found for a name gossip
// knows: a node that is joining, which the leader has not registered yet.
func (b *fleetBackend) unregistered(node string, err error) error {
	if !errors.Is(err, api.ErrNotFound) {
		return err
	}
	for _, m := range b.live.liveMembers() {
		if m.Name == node {
			return fmt.Errorf("node %q: %w: it is joining (gossip knows it) but the leader has not registered it yet: try again in a moment", node, api.ErrNotFound)
		}
	}
	return err
}

// Cordon drains a node (its instances move elsewhere, none come) or lets
// it take instances again.
func (b *fleetBackend) Cordon(ctx context.Context, node string, cordoned bool) (api.CordonResult, error) {
	verb := "uncordon"
	if cordoned {
		verb = "drain"
	}
	if err := b.checkJoined(node, verb); err != nil {
		return api.CordonResult{}, err
	}
	if err := b.writes.write(ctx, store.SetCordon{Node: node, Cordoned: cordoned}, nil); err != nil {
		return api.CordonResult{}, b.unregistered(node, err)
	}
	var res api.CordonResult
	if !cordoned {
		return res, nil
	}
	st, err := b.state.Snapshot()
	if err != nil {
		return res, nil // the drain is done; the warning is a courtesy
	}
	// The apps the drain leaves without a node: those that cannot be
	// placed with the node drained and could without. This replica may
	// or may not hold the write yet: both states are set here.
	drained := func(cordoned bool) []store.NodeRecord {
		recs := slices.Clone(st.Nodes)
		for i := range recs {
			if recs[i].Name == node {
				recs[i].Cordoned = cordoned
			}
		}
		return recs
	}
	before := map[string]bool{}
	for _, u := range b.unplaced.unplaceable(st.Apps, st.Allocs, drained(false)) {
		before[u.App] = true
	}
	seen := map[string]bool{}
	for _, u := range b.unplaced.unplaceable(st.Apps, st.Allocs, drained(true)) {
		if !seen[u.App] && !before[u.App] {
			seen[u.App] = true
			res.Unplaced = append(res.Unplaced, api.UnplacedApp{App: u.App, Reason: u.Reason})
		}
	}
	return res, nil
}

// callLeader posts body to path on the leader over the node protocol, the
// leader waiting for one to be elected for up to writeTimeout.
func (b *fleetBackend) callLeader(ctx context.Context, path string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	var last error
	for {
		if addr, id := b.raft.r().LeaderWithID(); addr != "" && string(id) != b.self.ID {
			err := b.callOnce(ctx, addr, path, body)
			var de *dialError
			if !errors.As(err, &de) {
				return err
			}
			last = err // not sent: the next leader may take it
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return last
			}
			return fmt.Errorf("%w: no other node leads the cluster", api.ErrNoLeader)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (b *fleetBackend) callOnce(ctx context.Context, addr raft.ServerAddress, path string, body []byte) error {
	_, hp := splitRaftAddr(addr)
	resp, err := b.leader.nodeRequest(ctx, http.MethodPost, addr, path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: the leader at %s did not answer: %w", api.ErrNoLeader, hp, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	var we api.WireError
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(data, &we) != nil || we.Message == "" {
		return fmt.Errorf("leader %s: %s", hp, resp.Status)
	}
	return b.voters.asNotVoter(&we)
}

// forgetRequest names a node that is gone for good.
type forgetRequest struct {
	Name string `json:"name"`
}

// Forget takes a node that is gone for good (a dead device) out of the
// cluster, as leave would have: its name becomes free for a new node.
func (b *fleetBackend) Forget(ctx context.Context, name string) error {
	body, _ := json.Marshal(forgetRequest{Name: name})
	if b.raft.r().State() == raft.Leader {
		return b.forget(name)
	}
	return b.callLeader(ctx, "/v1/forget", body)
}

func (b *fleetBackend) serveForget(w http.ResponseWriter, r *http.Request) {
	var req forgetRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.Name == "" {
		writeWireError(w, http.StatusBadRequest, fmt.Errorf("%w: forget request: %v", api.ErrInvalid, err))
		return
	}
	if err := b.forget(req.Name); err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, api.ErrNotFound) {
			code = http.StatusNotFound
		} else if errors.Is(err, api.ErrConflict) {
			code = http.StatusConflict
		}
		writeWireError(w, code, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// forget runs on the leader.
func (b *fleetBackend) forget(name string) error {
	recs, err := b.state.Nodes()
	if err != nil {
		return err
	}
	var id string
	for _, r := range recs {
		if r.Name == name {
			id = r.ID
		}
	}
	if id == "" {
		return fmt.Errorf("node %q: %w", name, api.ErrNotFound)
	}
	for _, m := range b.live.liveMembers() {
		if m.Name != name {
			continue
		}
		if m.State == api.NodeSuspect {
			// Not heard from lately, but not given up on: it may be cut
			// off or busy rather than gone.
			return fmt.Errorf("%w: node %s is suspect (this node's probes have had no answer from it lately; gossip has not declared it dead): "+
				"if it is gone for good, forget it once shoal nodes shows it dead; if it is up, run shoal leave on it", api.ErrConflict, name)
		}
		return fmt.Errorf("%w: node %s is %s: run shoal leave on it instead", api.ErrConflict, name, m.State)
	}
	if id == b.self.ID {
		return fmt.Errorf("%w: node %s is alive (it leads the cluster): run shoal leave on it instead", api.ErrConflict, name)
	}
	if err := b.removeNode(id, name); err != nil {
		return err
	}
	b.log.Warn("a node was forgotten", "name", name, "id", id)
	return nil
}

// removeNode takes a node out of the cluster, on the leader: out of Raft
// if it is a server (never leaving the voters without a live majority),
// then revoked (its certificate admits it nowhere, gossip stops counting
// it), then out of the registry (its instances move).
func (b *fleetBackend) removeNode(id, name string) error {
	r := b.raft.r()
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	alive := map[string]bool{b.self.ID: true}
	for _, m := range b.live.liveMembers() {
		alive[m.Meta.ID] = true
	}
	var server *raft.Server
	voters, live := 0, 0
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			server = &s
		}
		if s.Suffrage == raft.Voter {
			voters++
			if alive[string(s.ID)] {
				live++
			}
		}
	}
	if server != nil && server.Suffrage == raft.Voter {
		rest, restLive := voters-1, live
		if alive[id] {
			restLive--
		}
		switch {
		case rest == 0:
			return fmt.Errorf("%w: %s is the cluster's only voter: it cannot leave while other nodes depend on it", api.ErrConflict, name)
		case restLive < rest/2+1:
			return fmt.Errorf("%w: without voter %s the cluster would have %d voters of which %d are reachable, and a majority needs %d: bring the others back first",
				api.ErrConflict, name, rest, restLive, rest/2+1)
		}
	}
	if server != nil {
		if err := r.RemoveServer(raft.ServerID(id), 0, writeTimeout).Error(); err != nil {
			if errors.Is(err, raft.ErrNotLeader) {
				return fmt.Errorf("%w: leadership moved; try again", api.ErrNoLeader)
			}
			return fmt.Errorf("remove %s from raft: %w", name, err)
		}
	}
	if _, err := b.writes.applyLocal(store.Revoke{ID: id}, writeTimeout); err != nil {
		return err
	}
	_, err := b.writes.applyLocal(store.DeleteNodes{Names: []string{name}}, writeTimeout)
	return err
}

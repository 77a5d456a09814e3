package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/agent"
	"github.com/shoal-edge/shoal/cluster/pki"
)

// Instance states are observed, never written to Raft: each node is the
// authority on its own instances and sends its whole view to the leader
// when it changes, when the leader or its term changes, and every
// refreshEvery. The leader keeps the views in memory, each with the term
// it came in, and answers `ps` for the cluster; a
// node that cannot reach a leader answers with its own instances and
// "unknown" for the others'.

const (
	reportTick   = time.Second
	refreshEvery = 30 * time.Second
)

// reports carries instance states between the nodes and the leader: run
// sends this node's view to the leader (POST /v1/report); on the leader,
// serve keeps the views the nodes send and servePS answers a follower's
// `ps` with them (GET /v1/ps); observed is what this node's `ps` knows.
// Safe for concurrent use.
type reports struct {
	self  identity
	raft  runningRaft
	local localInstances
	live  liveGossip
	node  leaderCaller
	peers reportingPeers
	log   *slog.Logger

	mu       sync.Mutex                // guards following
	received map[string]receivedReport // by node name; on the leader
}

// localInstances is this node's own view of its instances (the agent).
type localInstances interface {
	Status() []api.InstanceStatus
}

// reportingPeers tells which node sent a request over the node protocol,
// and whether it is the node of a name.
type reportingPeers interface {
	peerOf(r *http.Request) *pki.NodeIdentity
	isNode(peer pki.NodeIdentity, name string) bool
}

var (
	_ localInstances = (*agent.Agent)(nil)
	_ reportingPeers = (*trust)(nil)
)

func newReports(self identity, r runningRaft, local localInstances, live liveGossip, node leaderCaller, peers reportingPeers, log *slog.Logger) *reports {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &reports{self: self, raft: r, local: local, live: live, node: node, peers: peers, log: log,
		received: map[string]receivedReport{}}
}

// statusReport is one node's view of its own instances.
type statusReport struct {
	Node      string               `json:"node"`
	Instances []api.InstanceStatus `json:"instances"`
}

// receivedReport is a report as the leader keeps it.
type receivedReport struct {
	at        time.Time
	term      uint64 // the leader's term when it came
	instances []api.InstanceStatus
}

// lastReport is what a node last sent the leader, and when: run sends
// its view again when it changed, when the leader or its term changed
// (a leader re-elected for a new term has forgotten the views of the
// last), or every refreshEvery.
type lastReport struct {
	leader    raft.ServerID
	term      uint64
	at        time.Time
	instances []api.InstanceStatus
}

func (l lastReport) due(leader raft.ServerID, term uint64, cur []api.InstanceStatus, now time.Time) bool {
	return leader != l.leader || term != l.term || !slices.EqualFunc(cur, l.instances, sameStatus) || now.Sub(l.at) >= refreshEvery
}

// run sends this node's view to the leader until ctx ends.
func (rp *reports) run(ctx context.Context) error {
	var last lastReport
	tick := time.NewTicker(reportTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur := rp.local.Status()
		r := rp.raft.r()
		addr, leader := r.LeaderWithID()
		if leader == "" {
			continue
		}
		if string(leader) == rp.self.ID {
			rp.keep(statusReport{Node: rp.self.Name, Instances: cur})
			last.leader = leader
			continue
		}
		// The term before the leader: a term learnt after it is sent
		// again at the next tick.
		term := r.CurrentTerm()
		if !last.due(leader, term, cur, time.Now()) {
			continue
		}
		body, _ := json.Marshal(statusReport{Node: rp.self.Name, Instances: cur})
		if err := rp.post(ctx, addr, "/v1/report", body); err != nil {
			rp.log.Debug("report instance states to the leader", "leader", addr, "err", err)
			continue
		}
		last = lastReport{leader: leader, term: term, at: time.Now(), instances: cur}
	}
}

func sameStatus(a, b api.InstanceStatus) bool { return a == b }

// post posts body to path on the node at addr over the node protocol.
func (rp *reports) post(ctx context.Context, addr raft.ServerAddress, path string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	resp, err := rp.node.nodeRequest(ctx, http.MethodPost, addr, path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return nil
}

func (rp *reports) keep(r statusReport) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.received[r.Node] = receivedReport{at: time.Now(), term: rp.raft.r().CurrentTerm(), instances: r.Instances}
}

// forgetReports drops the views reported to a term before term: a new
// term's leader hears every node's view again. Views that came in term
// itself are kept: a node may have sent its view to the new term before
// the leader's loop began it.
func (rp *reports) forgetReports(term uint64) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	maps.DeleteFunc(rp.received, func(_ string, r receivedReport) bool { return r.term < term })
}

// serve is the leader's side of run.
func (rp *reports) serve(w http.ResponseWriter, r *http.Request) {
	var rep statusReport
	if err := json.NewDecoder(io.LimitReader(r.Body, maxForwardBody)).Decode(&rep); err != nil || rep.Node == "" {
		writeWireError(w, http.StatusBadRequest, fmt.Errorf("%w: report: %v", api.ErrInvalid, err))
		return
	}
	// A node speaks for its own instances only: the report's node, and
	// every instance in it, since the cluster's ps takes an instance's
	// state from whichever report names the node it is placed on.
	if peer := rp.peers.peerOf(r); peer == nil || !rp.peers.isNode(*peer, rep.Node) ||
		slices.ContainsFunc(rep.Instances, func(s api.InstanceStatus) bool { return s.Node != rep.Node }) {
		writeWireError(w, http.StatusForbidden, fmt.Errorf("%w: a node may only report its own instances", api.ErrForbidden))
		return
	}
	rp.keep(rep)
	w.WriteHeader(http.StatusNoContent)
}

// clusterView is the instance states the leader knows, by instance, for
// nodes gossip reports alive.
func (rp *reports) clusterView() map[string]api.InstanceStatus {
	alive := map[string]bool{}
	for _, m := range rp.live.liveMembers() {
		alive[m.Name] = true
	}
	out := map[string]api.InstanceStatus{}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	for node, rep := range rp.received {
		// A node's view that has not been refreshed for long is of a node
		// that is gone; its instances may run elsewhere by now.
		if !alive[node] && time.Since(rep.at) > 3*refreshEvery {
			delete(rp.received, node)
			continue
		}
		for _, s := range rep.instances {
			if !alive[node] {
				s.State = api.StateUnknown
			}
			// An instance moved: the view of the node it is placed on
			// wins over an old one (PS matches nodes with allocations).
			if prev, ok := out[s.Instance]; ok && alive[prev.Node] && !alive[node] {
				continue
			}
			out[s.Instance] = s
		}
	}
	return out
}

// servePS answers a follower's `ps` on the leader with the cluster's view.
func (rp *reports) servePS(w http.ResponseWriter, r *http.Request) {
	if rp.raft.r().State() != raft.Leader {
		writeAnswer(w, nil, errLeadershipMoved, true)
		return
	}
	writeAnswer(w, rp.clusterView(), nil, false)
}

// observed is what this node can learn of every instance's state: from the
// leader (itself, or asked), with its own instances always its own view.
// known is false when no leader answered: others' states are unknown.
func (rp *reports) observed(ctx context.Context) (view map[string]api.InstanceStatus, known bool) {
	view = map[string]api.InstanceStatus{}
	r := rp.raft.r()
	if r.State() == raft.Leader {
		view, known = rp.clusterView(), true
	} else if addr, id := r.LeaderWithID(); addr != "" && string(id) != rp.self.ID {
		if v, err := rp.askPS(ctx, addr); err == nil {
			view, known = v, true
		} else {
			rp.log.Debug("ask the leader for instance states", "err", err)
		}
	}
	for _, s := range rp.local.Status() {
		view[s.Instance] = s
	}
	return view, known
}

func (rp *reports) askPS(ctx context.Context, addr raft.ServerAddress) (map[string]api.InstanceStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return nodeGet[map[string]api.InstanceStatus](ctx, rp.node, addr, "/v1/ps")
}

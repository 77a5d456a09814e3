package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
)

// Instance states are observed, never written to Raft: each node is the
// authority on its own instances and sends its whole view to the leader
// when it changes, when the leader changes, and every refreshEvery. The
// leader keeps the views in memory and answers `ps` for the cluster; a
// node that cannot reach a leader answers with its own instances and
// "unknown" for the others'.

const (
	reportTick   = time.Second
	refreshEvery = 30 * time.Second
)

// statusReport is one node's view of its own instances.
type statusReport struct {
	Node      string               `json:"node"`
	Instances []api.InstanceStatus `json:"instances"`
}

// receivedReport is a report as the leader keeps it.
type receivedReport struct {
	at        time.Time
	instances []api.InstanceStatus
}

// reportStatus sends this node's view to the leader.
func (n *Node) reportStatus(ctx context.Context) error {
	var (
		lastSent   []api.InstanceStatus
		lastLeader raft.ServerID
		lastAt     time.Time
	)
	tick := time.NewTicker(reportTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur := n.agent.Status()
		addr, leader := n.raft.r().LeaderWithID()
		if leader == "" {
			continue
		}
		if string(leader) == n.id.ID {
			n.keepReport(statusReport{Node: n.id.Name, Instances: cur})
			lastLeader = leader
			continue
		}
		if leader == lastLeader && slices.EqualFunc(cur, lastSent, sameStatus) && time.Since(lastAt) < refreshEvery {
			continue
		}
		body, _ := json.Marshal(statusReport{Node: n.id.Name, Instances: cur})
		if err := n.postNode(ctx, addr, "/v1/report", body); err != nil {
			n.log.Debug("report instance states to the leader", "leader", addr, "err", err)
			continue
		}
		lastSent, lastLeader, lastAt = cur, leader, time.Now()
	}
}

func sameStatus(a, b api.InstanceStatus) bool { return a == b }

// postNode posts body to path on the node at addr over the node protocol.
func (n *Node) postNode(ctx context.Context, addr raft.ServerAddress, path string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	resp, err := n.nodeRequest(ctx, http.MethodPost, addr, path, bytes.NewReader(body))
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

func (n *Node) keepReport(r statusReport) {
	n.reportsMu.Lock()
	defer n.reportsMu.Unlock()
	n.reports[r.Node] = receivedReport{at: time.Now(), instances: r.Instances}
}

// forgetReports drops the views reported to an earlier term: a new term's
// leader hears every node's view again.
func (n *Node) forgetReports() {
	n.reportsMu.Lock()
	defer n.reportsMu.Unlock()
	n.reports = map[string]receivedReport{}
}

// serveReport is the leader's side of reportStatus.
func (n *Node) serveReport(w http.ResponseWriter, r *http.Request) {
	var rep statusReport
	if err := json.NewDecoder(io.LimitReader(r.Body, maxForwardBody)).Decode(&rep); err != nil || rep.Node == "" {
		writeWireError(w, http.StatusBadRequest, fmt.Errorf("%w: report: %v", api.ErrInvalid, err))
		return
	}
	// A node speaks for its own instances only: the report's node, and
	// every instance in it, since the cluster's ps takes an instance's
	// state from whichever report names the node it is placed on.
	if peer := n.trust.peerOf(r); peer == nil || !n.trust.isNode(*peer, rep.Node) ||
		slices.ContainsFunc(rep.Instances, func(s api.InstanceStatus) bool { return s.Node != rep.Node }) {
		writeWireError(w, http.StatusForbidden, fmt.Errorf("%w: a node may only report its own instances", api.ErrForbidden))
		return
	}
	n.keepReport(rep)
	w.WriteHeader(http.StatusNoContent)
}

// clusterView is the instance states the leader knows, by instance, for
// nodes gossip reports alive.
func (n *Node) clusterView() map[string]api.InstanceStatus {
	alive := map[string]bool{}
	for _, m := range n.liveMembers() {
		alive[m.Name] = true
	}
	out := map[string]api.InstanceStatus{}
	n.reportsMu.Lock()
	defer n.reportsMu.Unlock()
	for node, rep := range n.reports {
		// A node's view that has not been refreshed for long is of a node
		// that is gone; its instances may run elsewhere by now.
		if !alive[node] && time.Since(rep.at) > 3*refreshEvery {
			delete(n.reports, node)
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
func (n *Node) servePS(w http.ResponseWriter, r *http.Request) {
	if n.raft.r().State() != raft.Leader {
		writeAnswer(w, nil, errLeadershipMoved, true)
		return
	}
	writeAnswer(w, n.clusterView(), nil, false)
}

// observed is what this node can learn of every instance's state: from the
// leader (itself, or asked), with its own instances always its own view.
// known is false when no leader answered: others' states are unknown.
func (n *Node) observed(ctx context.Context) (view map[string]api.InstanceStatus, known bool) {
	view = map[string]api.InstanceStatus{}
	r := n.raft.r()
	if r.State() == raft.Leader {
		view, known = n.clusterView(), true
	} else if addr, id := r.LeaderWithID(); addr != "" && string(id) != n.id.ID {
		if v, err := n.askPS(ctx, addr); err == nil {
			view, known = v, true
		} else {
			n.log.Debug("ask the leader for instance states", "err", err)
		}
	}
	for _, s := range n.agent.Status() {
		view[s.Instance] = s
	}
	return view, known
}

func (n *Node) askPS(ctx context.Context, addr raft.ServerAddress) (map[string]api.InstanceStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return nodeGet[map[string]api.InstanceStatus](ctx, n, addr, "/v1/ps")
}

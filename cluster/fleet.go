package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/store"
)

// Label sets and removes a node's labels.
func (n *Node) Label(ctx context.Context, node string, req api.LabelRequest) error {
	for k, v := range req.Set {
		if err := api.ValidLabel(k, v); err != nil {
			return fmt.Errorf("%w: %v", api.ErrInvalid, err)
		}
	}
	if len(req.Set) == 0 && len(req.Remove) == 0 {
		return fmt.Errorf("%w: no label to set or remove", api.ErrInvalid)
	}
	if err := n.checkJoined(node, "label"); err != nil {
		return err
	}
	return n.unregistered(node, n.writes.write(ctx, store.SetLabels{Node: node, Set: req.Set, Remove: req.Remove}, nil))
}

// checkJoined refuses to label or drain a name that no node has joined
// under, whose only record is the settings a restored backup keeps for
// it: the write would go through and change nothing anyone sees (nodes
// does not list the name), and the user would take it for done.
func (n *Node) checkJoined(node, verb string) error {
	rec, ok, err := n.store.NodeRecord(node)
	if err != nil || !ok || rec.Joined() {
		return err // no record: the state machine says not found
	}
	return fmt.Errorf("node %q: %w: no node has joined the cluster under that name; a restored backup keeps labels and a drain for it, which a node takes when it joins under it: %s it once it has joined (shoal nodes lists it then)",
		node, api.ErrNotFound, verb)
}

// unregistered explains the state machine's not found for a name gossip
// knows: a node that is joining, which the leader has not registered yet.
func (n *Node) unregistered(node string, err error) error {
	if !errors.Is(err, api.ErrNotFound) {
		return err
	}
	for _, m := range n.liveMembers() {
		if m.Name == node {
			return fmt.Errorf("node %q: %w: it is joining (gossip knows it) but the leader has not registered it yet: try again in a moment", node, api.ErrNotFound)
		}
	}
	return err
}

// Cordon drains a node (its instances move elsewhere, none come) or lets
// it take instances again.
func (n *Node) Cordon(ctx context.Context, node string, cordoned bool) (api.CordonResult, error) {
	verb := "uncordon"
	if cordoned {
		verb = "drain"
	}
	if err := n.checkJoined(node, verb); err != nil {
		return api.CordonResult{}, err
	}
	if err := n.writes.write(ctx, store.SetCordon{Node: node, Cordoned: cordoned}, nil); err != nil {
		return api.CordonResult{}, n.unregistered(node, err)
	}
	var res api.CordonResult
	if !cordoned {
		return res, nil
	}
	st, err := n.store.Snapshot()
	if err != nil {
		return res, nil // the drain is done; the warning is a courtesy
	}
	// This replica may not hold the write yet: the node is drained.
	for i := range st.Nodes {
		if st.Nodes[i].Name == node {
			st.Nodes[i].Cordoned = true
		}
	}
	seen := map[string]bool{}
	for _, u := range n.unplaced.unplaceable(st.Apps, st.Allocs, st.Nodes) {
		if !seen[u.App] {
			seen[u.App] = true
			res.Unplaced = append(res.Unplaced, api.UnplacedApp{App: u.App, Reason: u.Reason})
		}
	}
	return res, nil
}

// callLeader posts body to path on the leader over the node protocol, the
// leader waiting for one to be elected for up to writeTimeout.
func (n *Node) callLeader(ctx context.Context, path string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	var last error
	for {
		if addr, id := n.raft.r().LeaderWithID(); addr != "" && string(id) != n.id.ID {
			err := n.callOnce(ctx, addr, path, body)
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

func (n *Node) callOnce(ctx context.Context, addr raft.ServerAddress, path string, body []byte) error {
	_, hp := splitRaftAddr(addr)
	resp, err := n.nodeRequest(ctx, http.MethodPost, addr, path, bytes.NewReader(body))
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
	return n.trust.asNotVoter(&we)
}

// forgetRequest names a node that is gone for good.
type forgetRequest struct {
	Name string `json:"name"`
}

// Forget takes a node that is gone for good (a dead device) out of the
// cluster, as leave would have: its name becomes free for a new node.
func (n *Node) Forget(ctx context.Context, name string) error {
	body, _ := json.Marshal(forgetRequest{Name: name})
	if n.raft.r().State() == raft.Leader {
		return n.forget(name)
	}
	return n.callLeader(ctx, "/v1/forget", body)
}

func (n *Node) serveForget(w http.ResponseWriter, r *http.Request) {
	var req forgetRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.Name == "" {
		writeWireError(w, http.StatusBadRequest, fmt.Errorf("%w: forget request: %v", api.ErrInvalid, err))
		return
	}
	if err := n.forget(req.Name); err != nil {
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
func (n *Node) forget(name string) error {
	recs, err := n.store.Nodes()
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
	for _, m := range n.liveMembers() {
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
	if id == n.id.ID {
		return fmt.Errorf("%w: node %s is alive (it leads the cluster): run shoal leave on it instead", api.ErrConflict, name)
	}
	if err := n.removeNode(id, name); err != nil {
		return err
	}
	n.log.Warn("a node was forgotten", "name", name, "id", id)
	return nil
}

// removeNode takes a node out of the cluster, on the leader: out of Raft
// if it is a server (never leaving the voters without a live majority),
// then revoked (its certificate admits it nowhere, gossip stops counting
// it), then out of the registry (its instances move).
func (n *Node) removeNode(id, name string) error {
	r := n.raft.r()
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	alive := map[string]bool{n.id.ID: true}
	for _, m := range n.liveMembers() {
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
	if _, err := n.writes.applyLocal(store.Revoke{ID: id}, writeTimeout); err != nil {
		return err
	}
	_, err := n.writes.applyLocal(store.DeleteNodes{Names: []string{name}}, writeTimeout)
	return err
}

func writeWireError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(api.Wire(err))
}

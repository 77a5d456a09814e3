package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/store"
)

// Label sets and removes a node's labels.
func (n *Node) Label(ctx context.Context, node string, req api.LabelRequest) error {
	for k := range req.Set {
		if err := api.ValidLabelKey(k); err != nil {
			return fmt.Errorf("%w: label %q: %v", api.ErrInvalid, k, err)
		}
	}
	if len(req.Set) == 0 && len(req.Remove) == 0 {
		return fmt.Errorf("%w: no label to set or remove", api.ErrInvalid)
	}
	return n.write(ctx, store.SetLabels{Node: node, Set: req.Set, Remove: req.Remove}, nil)
}

// Cordon drains a node (its instances move elsewhere, none come) or lets
// it take instances again.
func (n *Node) Cordon(ctx context.Context, node string, cordoned bool) error {
	return n.write(ctx, store.SetCordon{Node: node, Cordoned: cordoned}, nil)
}

// leftFile marks a data dir whose node left its cluster: starting it again
// would only bring a stranger back.
const leftFile = "left"

// leaveRequest asks the leader to remove a node from Raft and the registry.
type leaveRequest struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Leave takes this node out of the cluster: gossip is told, the leader
// removes it from Raft and the registry (its instances move), the data dir
// is marked, and the node stops. The last server cannot leave.
func (n *Node) Leave(ctx context.Context) error {
	f := n.raft.r.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	if len(f.Configuration().Servers) <= 1 {
		return fmt.Errorf("%w: %s is the cluster's only server: stop it instead of leaving", api.ErrConflict, n.id.Name)
	}
	if n.raft.r.State() == raft.Leader {
		if err := n.raft.r.LeadershipTransfer().Error(); err != nil {
			return fmt.Errorf("hand leadership over before leaving: %w", err)
		}
	}
	// Gossip first, so that the leader does not register the node again
	// between removing it and hearing that it left.
	if err := n.members.ml.Leave(5 * time.Second); err != nil {
		n.log.Warn("gossip leave", "err", err)
	}
	body, _ := json.Marshal(leaveRequest{ID: n.id.ID, Name: n.id.Name})
	if err := n.callLeader(ctx, "/v1/leave", body); err != nil {
		return fmt.Errorf("leave: %w (gossip was told; run shoal leave again)", err)
	}
	if err := writeFileAtomic(filepath.Join(n.cfg.DataDir, leftFile), []byte(time.Now().UTC().Format(time.RFC3339)+"\n")); err != nil {
		return err
	}
	n.log.Info("left the cluster; stopping")
	n.stopOnce.Do(func() { close(n.stop) })
	return nil
}

// checkNotLeft refuses a data dir whose node left its cluster.
func checkNotLeft(dataDir string) error {
	if _, err := os.Stat(filepath.Join(dataDir, leftFile)); err == nil {
		return fmt.Errorf("the node of %s left its cluster: move the data dir away to start a new node", dataDir)
	}
	return nil
}

// callLeader posts body to path on the leader over the node protocol, the
// leader waiting for one to be elected for up to writeTimeout.
func (n *Node) callLeader(ctx context.Context, path string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	for {
		addr, id := n.raft.r.LeaderWithID()
		if addr != "" && string(id) != n.id.ID {
			resp, err := n.nodeRequest(ctx, http.MethodPost, addr, path, bytes.NewReader(body))
			if err != nil {
				return fmt.Errorf("%w: the leader at %s did not answer: %v", api.ErrNoLeader, addr, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
			var we api.WireError
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if json.Unmarshal(data, &we) != nil || we.Message == "" {
				return fmt.Errorf("leader %s: %s", addr, resp.Status)
			}
			return &we
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: no other node leads the cluster", api.ErrNoLeader)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// serveLeave is the leader's side of Leave.
func (n *Node) serveLeave(w http.ResponseWriter, r *http.Request) {
	var req leaveRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.ID == "" {
		writeWireError(w, http.StatusBadRequest, fmt.Errorf("%w: leave request: %v", api.ErrInvalid, err))
		return
	}
	// Revoked first: from then on the node's certificate admits it
	// nowhere, and gossip no longer counts it.
	if _, err := n.applyLocal(store.Revoke{ID: req.ID}, writeTimeout); err != nil {
		writeWireError(w, http.StatusServiceUnavailable, err)
		return
	}
	if err := n.raft.r.RemoveServer(raft.ServerID(req.ID), 0, writeTimeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			err = fmt.Errorf("%w: leadership moved; try again", api.ErrNoLeader)
		}
		writeWireError(w, http.StatusServiceUnavailable, err)
		return
	}
	if _, err := n.applyLocal(store.DeleteNodes{Names: []string{req.Name}}, writeTimeout); err != nil {
		writeWireError(w, http.StatusServiceUnavailable, err)
		return
	}
	n.log.Info("a node left the cluster", "name", req.Name, "id", req.ID)
	w.WriteHeader(http.StatusNoContent)
}

func writeWireError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(api.WireError{Kind: api.KindOf(err), Message: err.Error()})
}

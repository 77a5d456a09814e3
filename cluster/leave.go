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
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
)

// A node goes out of its cluster in one of two ways: it leaves (`shoal
// leave`), or the cluster forgets it (`shoal forget`) while it is down or
// cut off, and it finds out when it is back (watchRemoved). Either way,
// nothing manages its containers any more: it stops them all, leaves no
// mount or cgroup behind, marks its data dir (leftFile) and stops. A
// marked data dir never starts again: its identity is revoked.

// leftFile marks a data dir whose node is out of its cluster. It holds
// the time and how (removalLeft or removalForgotten); a file of an earlier
// release holds the time alone, of a leave.
const leftFile = "left"

const (
	removalLeft      = "left"
	removalForgotten = "forgotten"
)

// RemovedError says that this data dir's node is out of its cluster for
// good, and what the operator can do. `shoal up` exits with a status of
// its own for it (3), so that a service manager need not restart it.
type RemovedError struct {
	Name    string
	DataDir string
	How     string // removalLeft or removalForgotten
	At      time.Time
	// Stopped is how many containers were stopped when it was found out;
	// -1 when the data dir was refused at start.
	Stopped int
	// Leftover counts the containers that still ran under a refused data
	// dir (left running by an earlier release's leave, or a leave cut
	// short), which the refusal stopped.
	Leftover int
}

func (e *RemovedError) Error() string {
	what := fmt.Sprintf("node %s left its cluster (shoal leave)", e.Name)
	if e.How == removalForgotten {
		// The node cannot tell a forget from a leave whose answer it
		// never got: both revoke it while it does not hear.
		what = fmt.Sprintf("node %s was removed from its cluster while it could not be reached (shoal forget, or a shoal leave cut short); its identity is revoked", e.Name)
		if !e.At.IsZero() {
			what += "; this node found that out at " + e.At.UTC().Format(time.RFC3339)
		}
	} else if !e.At.IsZero() {
		what += " at " + e.At.UTC().Format(time.RFC3339)
	}
	if e.Stopped >= 0 {
		noun, verb := containers(e.Stopped, "its")
		what += fmt.Sprintf(": %s %s stopped and the node has stopped", noun, verb)
	} else {
		what += ": its data dir cannot start again"
		if e.Leftover > 0 {
			noun, verb := containers(e.Leftover, "the")
			what += fmt.Sprintf(" (%s it had left running %s stopped now)", noun, verb)
		}
	}
	return what + fmt.Sprintf(". To run this device in a cluster again, delete the data dir (rm -rf %s) or move it away, "+
		"then join with a token from a voter (shoal token there): SHOAL_JOIN=TOKEN shoal --data-dir %s up", e.DataDir, e.DataDir)
}

// containers counts containers in words: "its container", "is"; "its 2
// containers", "are".
func containers(n int, det string) (noun, verb string) {
	if n == 1 {
		return det + " container", "is"
	}
	return fmt.Sprintf("%s %d containers", det, n), "are"
}

func (e *RemovedError) Is(target error) bool { return target == api.ErrRemoved }

// checkNotLeft refuses a data dir whose node is out of its cluster.
func checkNotLeft(dataDir string) error {
	data, err := os.ReadFile(filepath.Join(dataDir, leftFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	e := &RemovedError{DataDir: dataDir, How: removalLeft, Stopped: -1, Name: "of " + dataDir}
	if err != nil {
		return e
	}
	if ident, fresh, err := loadIdentity(dataDir, ""); err == nil && !fresh {
		e.Name = ident.Name
	}
	at, how, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
	e.At, _ = time.Parse(time.RFC3339, at)
	if how == removalForgotten {
		e.How = how
	}
	return e
}

// leaveRequest asks the leader to remove a node from Raft and the
// registry. Wait (an earlier release sends none, and its leader answers
// at once) is how long the leader may hold the answer while the node's
// instances start on other nodes.
type leaveRequest struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	WaitMS int64  `json:"wait_ms,omitempty"`
}

// Leave takes this node out of the cluster: gossip is told, the leader
// removes it from Raft and the registry and answers once its instances
// run on other nodes (or cannot, or wait has passed); then the node stops
// every container, marks the data dir and stops. Until the leader has
// let it go, the agent holds still: an instance being moved keeps
// running here. The last server cannot leave.
func (n *Node) Leave(ctx context.Context, req api.LeaveRequest) (api.LeaveResult, error) {
	wait := req.Wait.D()
	if wait <= 0 {
		wait = api.DefaultLeaveWait.D()
	}
	f := n.raft.r().GetConfiguration()
	if err := f.Error(); err != nil {
		return api.LeaveResult{}, err
	}
	if len(f.Configuration().Servers) <= 1 {
		return api.LeaveResult{}, fmt.Errorf("%w: %s is the cluster's only server: stop it instead of leaving", api.ErrConflict, n.id.Name)
	}
	if n.raft.r().State() == raft.Leader {
		if err := n.handOver(); err != nil {
			return api.LeaveResult{}, fmt.Errorf("hand leadership over before leaving: %w", err)
		}
	}
	n.leaving.Store(true)
	n.agent.Hold()
	// Gossip first, so that the leader does not register the node again
	// between removing it and hearing that it left.
	if err := n.members.leave(5 * time.Second); err != nil {
		n.log.Warn("gossip leave", "err", err)
	}
	// Once asked, the leader may remove the node at any moment: a client
	// that goes away (Ctrl-C) must not cut the leave short half-way.
	res, err := n.askLeave(context.WithoutCancel(ctx), wait)
	if err != nil {
		n.agent.Release()
		n.leaving.Store(false)
		return api.LeaveResult{}, fmt.Errorf("leave: %w (gossip was told; run shoal leave again)", err)
	}
	res.Stopped = n.retire(removalLeft)
	n.log.Info("left the cluster; its containers are stopped; stopping", "stopped", res.Stopped)
	n.stopWith(nil)
	return res, nil
}

// askLeave asks the leader to take this node out, waiting for an elected
// leader for up to writeTimeout and for the answer up to wait more.
func (n *Node) askLeave(ctx context.Context, wait time.Duration) (api.LeaveResult, error) {
	body, _ := json.Marshal(leaveRequest{ID: n.id.ID, Name: n.id.Name, WaitMS: wait.Milliseconds()})
	ctx, cancel := context.WithTimeout(ctx, writeTimeout+wait+10*time.Second)
	defer cancel()
	elect, cancelElect := context.WithTimeout(ctx, writeTimeout)
	defer cancelElect()
	var last error
	for {
		addr, id := n.raft.r().LeaderWithID()
		if string(id) == n.id.ID {
			// Elected meanwhile (a cluster still settling): only another
			// leader can take this node out.
			if err := n.handOver(); err != nil {
				last = fmt.Errorf("hand leadership over before leaving: %w", err)
			}
		} else if addr != "" {
			res, err := n.leaveOnce(ctx, addr, body)
			var de *dialError
			if !errors.As(err, &de) {
				return res, err
			}
			last = err // not sent: the next leader may take it
		}
		select {
		case <-elect.Done():
			if last != nil {
				return api.LeaveResult{}, last
			}
			return api.LeaveResult{}, fmt.Errorf("%w: no other node leads the cluster", api.ErrNoLeader)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (n *Node) leaveOnce(ctx context.Context, addr raft.ServerAddress, body []byte) (api.LeaveResult, error) {
	var res api.LeaveResult
	_, hp := splitRaftAddr(addr)
	resp, err := n.nodeRequest(ctx, http.MethodPost, addr, "/v1/leave", bytes.NewReader(body))
	if err != nil {
		return res, fmt.Errorf("%w: the leader at %s did not answer: %w", api.ErrNoLeader, hp, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusNoContent:
		return res, nil // an earlier release: it did not wait
	case http.StatusOK:
		if err := json.Unmarshal(data, &res); err != nil {
			return res, fmt.Errorf("leader %s: leave answer: %w", hp, err)
		}
		return res, nil
	}
	var we api.WireError
	if json.Unmarshal(data, &we) != nil || we.Message == "" {
		return res, fmt.Errorf("leader %s: %s", hp, resp.Status)
	}
	return res, n.trust.asNotVoter(&we)
}

// retire stops every container of this node and marks the data dir: the
// node is out of its cluster (how), and nothing else would manage them.
func (n *Node) retire(how string) int {
	stopped := n.agent.Retire() + n.ctrs.stopRuns()
	mark := time.Now().UTC().Format(time.RFC3339) + " " + how + "\n"
	if err := writeFileAtomic(filepath.Join(n.cfg.DataDir, leftFile), []byte(mark)); err != nil {
		n.log.Error("mark the data dir as out of its cluster", "err", err)
	}
	if err := n.cakey.drop(); err != nil {
		n.log.Warn("delete the CA key after leaving", "err", err)
	}
	return stopped
}

// stopWith ends Run, which returns err.
func (n *Node) stopWith(err error) {
	n.stopOnce.Do(func() {
		n.stopErr = err
		close(n.stop)
	})
}

// handOver transfers leadership to another voter, trying again a few
// times: a pooled connection to a peer that restarted its Raft fails once.
func (n *Node) handOver() error {
	if !n.otherVoters() {
		return errors.New("no other voter to hand leadership to")
	}
	var err error
	for range 3 {
		r := n.raft.r()
		if r.State() != raft.Leader {
			return nil
		}
		if err = r.LeadershipTransfer().Error(); err == nil {
			return nil
		}
		n.log.Info("hand leadership over: trying again", "err", err)
	}
	return err
}

// otherVoters reports whether Raft's configuration has a voter other than
// this node.
func (n *Node) otherVoters() bool {
	f := n.raft.r().GetConfiguration()
	if f.Error() != nil {
		return true // not knowing: let Raft answer
	}
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter && string(srv.ID) != n.id.ID {
			return true
		}
	}
	return false
}

// serveLeave is the leader's side of Leave: a node asks to be removed,
// and only for itself. The answer waits, up to the node's wait, until
// the instances placed on the node run elsewhere.
func (n *Node) serveLeave(w http.ResponseWriter, r *http.Request) {
	var req leaveRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.ID == "" {
		writeWireError(w, http.StatusBadRequest, fmt.Errorf("%w: leave request: %v", api.ErrInvalid, err))
		return
	}
	// Both from the certificate: the name is the registry record that
	// goes, and another node's record must not go with this one's id.
	if peer := n.trust.peerOf(r); peer == nil || peer.ID != req.ID || peer.Name != req.Name {
		writeWireError(w, http.StatusForbidden, fmt.Errorf("%w: a node may only take itself out of the cluster", api.ErrInvalid))
		return
	}
	allocs, err := n.store.Allocations()
	if err != nil {
		writeWireError(w, http.StatusServiceUnavailable, err)
		return
	}
	var placed []api.Allocation
	for _, a := range allocs {
		if a.Node == req.Name {
			placed = append(placed, a)
		}
	}
	if err := n.fleet.removeNode(req.ID, req.Name); err != nil {
		writeWireError(w, http.StatusServiceUnavailable, err)
		return
	}
	n.log.Info("a node left the cluster", "name", req.Name, "id", req.ID)
	wait := min(time.Duration(req.WaitMS)*time.Millisecond, time.Hour)
	res := n.awaitMoved(r.Context(), req.Name, placed, wait)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

// awaitMoved waits, up to wait, until every instance that was placed on
// the node that left runs on another node, or has no other node to go to
// (the scheduler deleted it: a global app's, or one no other node may
// run). It says where each one is; those still on their way are named so.
func (n *Node) awaitMoved(ctx context.Context, node string, placed []api.Allocation, wait time.Duration) api.LeaveResult {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		res, moving := n.whereMoved(node, placed)
		if len(moving) == 0 {
			return res
		}
		changed := n.store.Changed()
		select {
		case <-deadline.C:
		case <-ctx.Done():
		case <-changed:
			continue
		case <-time.After(200 * time.Millisecond): // reports come without a change of state
			if n.raft.r().State() == raft.Leader {
				continue
			}
			// Another leader has the reports now: what this one knows is
			// all it can say.
		}
		for _, i := range moving {
			res.Instances[i].Note = fmt.Sprintf("%s after %v: stopped anyway", res.Instances[i].Note, wait)
		}
		return res
	}
}

// whereMoved is the leader's view of the instances placed before on a
// node that left; moving indexes those on their way, not running on
// another node yet.
func (n *Node) whereMoved(node string, placed []api.Allocation) (res api.LeaveResult, moving []int) {
	allocs, err := n.store.Allocations()
	if err != nil {
		allocs = nil
	}
	now := map[string]api.Allocation{}
	for _, a := range allocs {
		now[a.Instance()] = a
	}
	view := n.reports.clusterView()
	for i, p := range placed {
		in := api.LeftInstance{Instance: p.Instance()}
		cur, ok := now[p.Instance()]
		switch {
		case err != nil:
			in.Note = "unknown: " + err.Error()
			moving = append(moving, i)
		case !ok:
			app, err := n.store.App(p.App)
			switch {
			case err != nil:
				in.Note = "its app was removed"
			case app.Mode == api.ModeGlobal:
				in.Note = "an instance of a global app stays with its node: stopped"
			default:
				in.Note = "no other node may run it (placement, drains): stopped"
			}
		case cur.Node == node:
			// The scheduler has not placed it anew yet.
			in.Note = "not placed on another node yet"
			moving = append(moving, i)
		default:
			st := view[p.Instance()]
			switch {
			case st.Node != cur.Node || st.Version != cur.Version:
				in.Note = "placed on " + cur.Node + ", not started there yet"
				moving = append(moving, i)
			case st.State == api.StateRunning || st.State == api.StateUnhealthy:
				in.Node, in.Note = cur.Node, "running on "+cur.Node
			case st.State == api.StateExited:
				in.Node, in.Note = cur.Node, "ran on "+cur.Node+" and exited"
			default:
				in.Note = string(st.State) + " on " + cur.Node
				moving = append(moving, i)
			}
		}
		res.Instances = append(res.Instances, in)
	}
	return res, moving
}

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/runtime/linux"
	"github.com/shoal-edge/shoal/runtime/monitor"
)

// A node that is out of its cluster without having left it itself finds
// out here: while running (watchRemoved), or at start, where a marked data
// dir still stops what runs under it (stopLeftContainers).

// removedCheckEvery is how often a node without contact to a leader asks
// the voters whether it is still a member.
const removedCheckEvery = 3 * time.Second

// watchRemoved finds out that the cluster removed this node while it could
// not hear of it (forgotten while down or cut off, or a leave whose answer
// it missed): its replica says it is revoked, or a voter refuses its
// certificate as removed. It then stops every container, marks the data
// dir and ends the node with a RemovedError.
func (n *Node) watchRemoved(ctx context.Context) error {
	tick := time.NewTicker(removedCheckEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if n.leaving.Load() || !n.store.Revoked(n.id.ID) && !n.refusedAsRemoved(ctx) {
			continue
		}
		n.log.Error("this node is no longer in its cluster: it was removed (shoal forget, or a shoal leave cut short) while it could not be reached; stopping its containers and itself")
		stopped := n.retire(removalForgotten)
		err := &RemovedError{Name: n.id.Name, DataDir: n.cfg.DataDir, How: removalForgotten, At: time.Now(), Stopped: stopped}
		n.log.Error(err.Error())
		n.stopWith(err)
		return nil
	}
}

// refusedAsRemoved asks the voters of this node's Raft configuration,
// while it has no contact with a leader, whether they still admit it. Only
// a voter's word counts (it holds the CA key and could revoke anyone): a
// non-voter, a stolen device perhaps, must not be able to make a node
// stop its containers.
func (n *Node) refusedAsRemoved(ctx context.Context) bool {
	r := n.raft.r()
	_, leader := r.LeaderWithID()
	if r.State() == raft.Leader || leader != "" && time.Since(r.LastContact()) < 5*time.Second {
		return false
	}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) != n.id.ID && s.Suffrage == raft.Voter && n.askMember(ctx, s.Address) {
			return true
		}
	}
	return false
}

// askMember says whether the voter at addr refuses this node as removed.
func (n *Node) askMember(ctx context.Context, addr raft.ServerAddress) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := n.nodeRequest(ctx, http.MethodGet, addr, "/v1/member", nil)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var we api.WireError
	if resp.StatusCode != http.StatusForbidden || resp.TLS == nil ||
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&we) != nil || we.Kind != api.KindRemoved {
		return false
	}
	p := n.mat.ident.Peer(*resp.TLS, nil).Node
	if p == nil || !p.Voter {
		return false
	}
	n.log.Warn("a voter refuses this node as removed from the cluster", "voter", p.Name, "said", we.Message)
	return true
}

// serveMember answers a node that asks whether it is still a member: the
// port refused it already if it is not (refuse).
func (n *Node) serveMember(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusNoContent)
}

// stopLeftContainers stops what still runs under a data dir that is out
// of its cluster, and removes the mounts and cgroups of its containers:
// nothing else could reach them, since the data dir does not start. An
// earlier release's leave left its containers running; a crash may cut a
// leave short. removed (a RemovedError) learns how many there were.
func (n *Node) stopLeftContainers(removed error) {
	var re *RemovedError
	id, fresh, err := loadIdentity(n.cfg.DataDir, "")
	if !errors.As(removed, &re) || err != nil || fresh || len(id.ID) < 12 {
		return // never ran a container
	}
	n.id = id
	dir := n.cfg.DataDir
	rt, err := linux.New(linux.Config{StateDir: filepath.Join(dir, "containers"), CgroupParent: n.cgroupParent(), Logger: n.log})
	if err != nil {
		n.log.Warn("stop the containers of a node out of its cluster", "err", err)
		return
	}
	defer rt.Close()
	mons, err := monitor.New(monitor.Config{StateDir: filepath.Join(dir, "monitors"), RuntimeStateDir: filepath.Join(dir, "containers"),
		CgroupParent: n.cgroupParent(), Logger: n.log})
	if err != nil {
		n.log.Warn("stop the containers of a node out of its cluster", "err", err)
		return
	}
	defer mons.Close()
	hs, err := mons.Adopt()
	if err != nil {
		n.log.Warn("find the containers of a node out of its cluster", "err", err)
	}
	var wg sync.WaitGroup
	for _, h := range hs {
		if h.Pid() != 0 {
			re.Leftover++
			n.log.Warn("stopping a container still running under a data dir out of its cluster", "container", h.ID(), "pid", h.Pid())
		}
		wg.Go(func() {
			if h.Pid() != 0 {
				h.Stop(10 * time.Second)
				h.Wait()
			}
			h.Delete()
		})
	}
	wg.Wait()
	if err := rt.Cleanup(mons.Owns); err != nil {
		n.log.Warn("clean up the containers of a node out of its cluster", "err", err)
	}
}

package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/shoal-edge/shoal/cluster/sched"
	"github.com/shoal-edge/shoal/store"
)

// watchLeadership starts the leader loop when this node wins an election and
// stops it when it loses leadership.
func (n *Node) watchLeadership(ctx context.Context) error {
	var running *leaderRun
	defer func() { running.stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case isLeader := <-n.leaderCh:
			running.stop()
			running = nil
			if isLeader {
				running = n.startLeaderLoop(ctx)
			}
		case <-n.relax:
			// The restart ends this term: its loop stops first. Handing
			// leadership to another voter (which runs a cluster's
			// timeouts already) spares the cluster the election.
			running.stop()
			running = nil
			if err := n.handOver(); err != nil {
				n.log.Info("hand leadership over before the raft restart", "err", err)
			}
			if err := n.relaxRaft(); err != nil {
				n.log.Error("restart raft", "err", err)
			}
		case e := <-n.rejoinTo:
			running.stop()
			running = nil
			if err := n.rejoin(e); err != nil {
				n.log.Error("rejoin after a recovery", "err", err)
			}
		}
	}
}

// leaderRun is one term of leadership's loop.
type leaderRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (n *Node) startLeaderLoop(ctx context.Context) *leaderRun {
	lctx, cancel := context.WithCancel(ctx)
	lr := &leaderRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(lr.done)
		n.leaderLoop(lctx)
	}()
	return lr
}

func (lr *leaderRun) stop() {
	if lr == nil {
		return
	}
	lr.cancel()
	<-lr.done
}

// leaderLoop runs only on the leader: it registers members in the node
// registry and turns apps into allocations. It starts with a barrier so it
// plans against everything earlier leaders committed.
func (n *Node) leaderLoop(ctx context.Context) {
	log := n.log.With("component", "leader")
	log.Info("leading the cluster")
	// Views reported to an earlier term of this node may be stale; the
	// nodes send theirs again to a new leader.
	n.reports.forgetAll()
	// Absences timed by an earlier term are not this term's: a node gone
	// briefly now must not count hours of an old absence.
	n.leaderMu.Lock()
	clear(n.deadSince)
	clear(n.serverGone)
	n.leaderMu.Unlock()
	if err := n.raft.r().Barrier(10 * time.Second).Error(); err != nil {
		log.Error("barrier", "err", err)
		return
	}
	if err := n.writeBootstrap(); err != nil {
		log.Error("write the cluster's id and secrets", "err", err)
		return
	}
	// Not fatal: the cluster keeps working on the old record meanwhile;
	// the next term tries again.
	if err := n.migrateSecrets(log); err != nil {
		log.Error("move the cluster's secrets out of the clear", "err", err)
	}
	// A periodic pass catches deadlines (reschedule_after) no event marks.
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		changed := n.store.Changed()
		members := n.verifiedMembers(ctx)
		if err := n.registerMembers(members); err != nil {
			log.Warn("register nodes", "err", err)
		}
		if err := n.autopilot(ctx, log, members); err != nil {
			log.Warn("autopilot", "err", err)
		}
		if err := n.schedule(); err != nil {
			log.Warn("schedule", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-n.members.changed:
		case <-tick.C:
		}
	}
}

// writeBootstrap puts what bootstrap made into Raft, once: the cluster id
// and the sealed secrets. Until then they wait in DATA/tls/bootstrap.json,
// which goes once they are committed. A bootstrap.json of the previous
// release (secrets in clear) is committed as that release did, for
// migrateSecrets to replace.
func (n *Node) writeBootstrap() error {
	pending, err := pendingBootstrap(n.cfg.DataDir)
	if err != nil {
		return err
	}
	if id, _ := n.store.ClusterID(); id == "" {
		var cid string
		if pending != nil {
			cid = pending.ClusterID
		} else {
			var b [16]byte
			rand.Read(b[:])
			cid = hex.EncodeToString(b[:])
		}
		if _, err := n.writes.applyLocal(store.Bootstrap{ClusterID: cid}, 10*time.Second); err != nil {
			return err
		}
	}
	if pending == nil {
		return nil
	}
	_, sealed, err := n.store.Secrets()
	if err != nil {
		return err
	}
	_, legacy, err := n.store.LegacySecrets()
	if err != nil {
		return err
	}
	var cmd any
	switch {
	case sealed || legacy:
	case pending.Sealed != nil:
		cmd = store.PutSealedSecrets{Secrets: *pending.Sealed}
	case pending.Legacy != nil:
		cmd = store.PutSecrets{Secrets: *pending.Legacy}
	default:
		return fmt.Errorf("%s holds no secrets", bootstrapFile)
	}
	if cmd != nil {
		if _, err := n.writes.applyLocal(cmd, 10*time.Second); err != nil {
			return err
		}
	}
	return os.Remove(filepath.Join(tlsDir(n.cfg.DataDir), bootstrapFile))
}

// registerMembers records new nodes and changed addresses in Raft. A new
// node's labels are its --label, from its gossip metadata; a known node
// keeps its labels: only what gossip is the authority on changes.
func (n *Node) registerMembers(members []member) error {
	recs, err := n.store.Nodes()
	if err != nil {
		return err
	}
	known := map[string]store.NodeRecord{}
	for _, r := range recs {
		known[r.Name] = r
	}
	for _, m := range members {
		rec, ok := known[m.Name]
		want := rec
		want.Name, want.ID, want.Address, want.Arch, want.OS = m.Name, m.Meta.ID, m.Addr, m.Meta.Arch, m.Meta.OS
		want.Port, want.GossipPort = m.Meta.Port, m.GossipPort
		// Labels come with the node's first registration only: later,
		// `shoal label` owns them.
		if !ok && len(m.Meta.Labels) > 0 {
			want.Labels = maps.Clone(m.Meta.Labels)
		}
		if ok && reflect.DeepEqual(rec, want) {
			continue
		}
		if _, err := n.writes.applyLocal(store.NodeFacts{Node: want}, 10*time.Second); err != nil {
			return fmt.Errorf("register %s: %w", m.Name, err)
		}
	}
	return nil
}

// liveness joins the registry with gossip: alive nodes, and since when the
// others have been gone (as far as this leader knows).
func (n *Node) liveness(recs []store.NodeRecord) map[string]sched.Node {
	live := map[string]bool{}
	for _, m := range n.liveMembers() {
		live[m.Name] = true
	}
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	now := time.Now()
	out := map[string]sched.Node{}
	for _, r := range recs {
		alive := live[r.Name]
		sn := sched.Node{Name: r.Name, Arch: r.Arch, Labels: r.Labels, Alive: alive, Cordoned: r.Cordoned}
		if alive {
			delete(n.deadSince, r.Name)
		} else {
			if _, ok := n.deadSince[r.Name]; !ok {
				n.deadSince[r.Name] = now
			}
			sn.DeadSince = n.deadSince[r.Name]
		}
		out[r.Name] = sn
	}
	return out
}

func (n *Node) schedule() error {
	st, err := n.store.Snapshot()
	if err != nil {
		return err
	}
	live := n.liveness(st.Nodes)
	in := sched.State{Apps: st.Apps, Allocs: st.Allocs, Now: time.Now()}
	for _, r := range st.Nodes {
		in.Nodes = append(in.Nodes, live[r.Name])
	}
	plan := sched.Compute(in)
	if plan.Empty() {
		return nil
	}
	cmd := store.SetAllocs{Put: plan.Put}
	for _, a := range plan.Delete {
		cmd.Delete = append(cmd.Delete, store.AllocKey{App: a.App, Index: a.Index})
	}
	_, err = n.writes.applyLocal(cmd, 10*time.Second)
	return err
}

// migrateSecrets replaces the previous release's record, which held the
// CA's key and the join secret in clear on every replica: the leader keeps
// the key in its own DATA/tls/ca.key (the other voters fetch it from
// there) and commits the sealed record, which deletes the old one from
// every replica's state.
func (n *Node) migrateSecrets(log *slog.Logger) error {
	legacy, ok, err := n.store.LegacySecrets()
	if err != nil || !ok {
		return err
	}
	if n.cakey.get() == nil {
		if err := n.cakey.put(legacy.CAKey); err != nil {
			return fmt.Errorf("keep the CA key: %w", err)
		}
	}
	sec, ok, err := n.store.Secrets()
	if err != nil {
		return err
	}
	if !ok {
		sealed, err := n.cakey.get().SealSecret(legacy.JoinSecret)
		if err != nil {
			return err
		}
		sec = store.Secrets{SealedJoinSecret: sealed, AdminKeys: legacy.AdminKeys}
	}
	if _, err := n.writes.applyLocal(store.PutSealedSecrets{Secrets: sec}, 10*time.Second); err != nil {
		return err
	}
	if err := n.compactLog(); err != nil {
		log.Warn("compact the Raft log after moving the secrets: nodes that join may still receive the old record", "err", err)
	}
	log.Warn("moved the cluster's secrets out of the clear: the CA key is now on the voters only, the join secret sealed; older Raft log segments, snapshots and free pages of state.db may still hold them until overwritten: rotate the join secret with shoal token --rotate")
	return nil
}

// compactLog snapshots the state and drops the whole log before it, so
// that a node that joins from now on receives the snapshot, which holds
// the sealed record only, rather than the old record's entry.
func (n *Node) compactLog() error {
	r := n.raft.r()
	rc := r.ReloadableConfig()
	keep := rc.TrailingLogs
	rc.TrailingLogs = 0
	if err := r.ReloadConfig(rc); err != nil {
		return err
	}
	defer func() {
		rc.TrailingLogs = keep
		if err := r.ReloadConfig(rc); err != nil {
			n.log.Warn("restore the Raft log's trailing entries", "err", err)
		}
	}()
	return r.Snapshot().Error()
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/shoal-edge/shoal/cluster/pki"
)

// A cluster's epoch counts its recoveries: 0 at bootstrap, one more with
// every `shoal recover`, kept in DATA/epoch. Raft speaks one ALPN protocol
// per epoch (pki.RaftProto), so nodes of different epochs never exchange a
// Raft message: a node that missed a recovery, coming back with the old
// configuration, cannot vote in the recovered cluster, and the voters it
// knew cannot outvote the recovered one. Gossip carries each node's epoch;
// a node that sees a member of a newer one (confirmed by its certificate)
// drops its Raft state and rejoins, adopted by autopilot like a new node.

const epochFile = "epoch"

func readEpoch(dataDir string) (uint64, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, epochFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	e, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s/%s: %w", dataDir, epochFile, err)
	}
	return e, nil
}

func writeEpoch(dataDir string, e uint64) error {
	return writeFileAtomic(filepath.Join(dataDir, epochFile), []byte(strconv.FormatUint(e, 10)+"\n"))
}

// newerEpoch looks for a live member of a newer epoch whose certificate
// backs its gossip: the sign that this node missed a recovery.
func (n *Node) newerEpoch(ctx context.Context) (uint64, bool) {
	own := n.epoch.Load()
	for _, m := range n.liveMembers() {
		if m.Meta.Epoch <= own || m.Meta.ID == n.id.ID || m.Meta.Port == 0 {
			continue
		}
		addr := joinHostPort(m.Addr, m.Meta.Port)
		if err := n.checkMember(ctx, m, addr); err != nil {
			continue
		}
		return m.Meta.Epoch, true
	}
	return 0, false
}

// rejoin drops this node's Raft state and replicated state, takes the
// newer epoch and starts Raft empty, to be added again by the leader. The
// node's identity, node-local records and containers stay. It runs where
// relaxRaft does, never on the leader loop.
func (n *Node) rejoin(epoch uint64) error {
	p := n.raft
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch <= n.epoch.Load() {
		return nil
	}
	n.log.Warn("this node missed a recovery of its cluster: dropping its Raft state to rejoin", "epoch", n.epoch.Load(), "cluster_epoch", epoch)
	if err := p.shutdown(); err != nil {
		return fmt.Errorf("stop raft: %w", err)
	}
	p.closeStores()
	if err := os.RemoveAll(filepath.Join(n.cfg.DataDir, "raft")); err != nil {
		return err
	}
	if err := n.store.Reset(); err != nil {
		return err
	}
	if err := writeEpoch(n.cfg.DataDir, epoch); err != nil {
		return err
	}
	n.epoch.Store(epoch)
	n.members.setEpoch(epoch)
	np, snaps, err := openRaftStores(n.cfg.DataDir, n.log)
	if err != nil {
		return err
	}
	p.wal, p.meta, p.snaps = np.wal, np.meta, snaps
	n.newTransport(p, n.port.Renew(pki.ProtoRaft))
	p.fast = false
	r, err := n.newRaft(p, n.raftConfigFor(false))
	if err != nil {
		return fmt.Errorf("restart raft: %w", err)
	}
	p.cur.Store(r)
	return nil
}

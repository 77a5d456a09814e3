package cluster

import (
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

// rejoin drops this node's Raft state and replicated state, takes the
// newer epoch and starts Raft empty, to be added again by the leader. The
// node's identity, node-local records and containers stay. It runs where
// relaxRaft does, never on the leader loop.
func (p *raftParts) rejoin(epoch uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch <= p.epoch.Load() {
		return nil
	}
	p.log.Warn("this node missed a recovery of its cluster: dropping its Raft state to rejoin", "epoch", p.epoch.Load(), "cluster_epoch", epoch)
	if err := p.shutdown(); err != nil {
		return fmt.Errorf("stop raft: %w", err)
	}
	p.raftStores.close()
	if err := os.RemoveAll(filepath.Join(p.dataDir, "raft")); err != nil {
		return err
	}
	if err := p.state.Reset(); err != nil {
		return err
	}
	if err := writeEpoch(p.dataDir, epoch); err != nil {
		return err
	}
	p.epoch.Store(epoch)
	p.announce(epoch)
	stores, err := openRaftStores(p.dataDir, p.log)
	if err != nil {
		return err
	}
	p.raftStores = *stores
	p.newTransport(p.port.Renew(pki.ProtoRaft))
	p.fast = false
	r, err := p.newRaft(p.raftConfigFor(false))
	if err != nil {
		return fmt.Errorf("restart raft: %w", err)
	}
	p.cur.Store(r)
	return nil
}

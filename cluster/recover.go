package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/store"
)

// Recover restarts a cluster that lost its quorum from the state of the
// node of dataDir, which must be stopped: Raft's configuration becomes this
// node alone, as a voter, in a new epoch. Every entry in its log counts as
// committed, even one the old majority never acknowledged. When the node
// starts again it leads; the other nodes, as they come back, see the newer
// epoch, drop their Raft state and rejoin (autopilot adds them again).
func Recover(dataDir string, log *slog.Logger) (voter string, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkNotLeft(dataDir); err != nil {
		return "", err
	}
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return "", fmt.Errorf("%w: stop the node before recovering", err)
	}
	defer lock.Close()
	id, fresh, err := loadIdentity(dataDir, "")
	if err != nil {
		return "", err
	}
	if fresh {
		return "", fmt.Errorf("%s holds no node: nothing to recover", dataDir)
	}
	// The recovered node must lead, and Raft admits only voter
	// certificates, which only a holder of the CA key can issue itself.
	if err := checkHoldsCAKey(dataDir); err != nil {
		return "", err
	}
	st, err := store.Open(filepath.Join(dataDir, "state.db"))
	if err != nil {
		return "", err
	}
	defer st.Close()
	stores, err := openRaftStores(dataDir, log)
	if err != nil {
		return "", err
	}
	defer stores.close()
	if ok, err := raft.HasExistingState(stores.wal, stores.wal, stores.snaps); err != nil {
		return "", err
	} else if !ok {
		return "", fmt.Errorf("%s has no Raft state: nothing to recover", dataDir)
	}
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(id.ID)
	conf.Logger = hclogFor(log, "raft")
	conf.NoSnapshotRestoreOnStart = true
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	cur, err := raft.GetConfiguration(conf, nopFSM{}, stores.wal, stores.wal, stores.snaps, trans)
	if err != nil {
		return "", fmt.Errorf("read the Raft configuration: %w", err)
	}
	var self *raft.Server
	for _, s := range cur.Servers {
		if string(s.ID) == id.ID {
			self = &s
		}
	}
	if self == nil {
		return "", errors.New("this node is not in its cluster's Raft configuration: it never became a server; recover on another node")
	}
	self.Suffrage = raft.Voter
	epoch, err := readEpoch(dataDir)
	if err != nil {
		return "", err
	}
	// Offline nobody frees the disk while the state machine waits for
	// room: the first entry the state file cannot take stops it, and its
	// snapshot is then refused, before Raft's log is touched.
	fsm := st.FSM()
	var stall error
	fsm.Stalled = func(index uint64, err error) {
		if err != nil && stall == nil {
			stall = err
			fsm.Stop()
		}
	}
	if err := raft.RecoverCluster(conf, fsm, stores.wal, stores.wal, stores.snaps, trans, raft.Configuration{Servers: []raft.Server{*self}}); err != nil {
		if stall != nil {
			return "", fmt.Errorf("recover: %w: nothing was changed but the state file, which holds the entries before; free some space under %s and recover again", stall, dataDir)
		}
		return "", fmt.Errorf("recover: %w", err)
	}
	// A new epoch: the nodes that missed this recovery speak no Raft with
	// this one until they have dropped their state (see epoch.go).
	if err := writeEpoch(dataDir, epoch+1); err != nil {
		return "", err
	}
	log.Warn("recovered: this node is now its cluster's only voter", "node", id.Name, "address", self.Address)
	return id.Name, nil
}

// checkHoldsCAKey refuses to recover a node without the CA key: a node
// that never was a voter, or one whose copy was deleted on demotion.
func checkHoldsCAKey(dataDir string) error {
	mat, ok, err := loadMaterial(dataDir)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s holds no certificate: nothing to recover", tlsDir(dataDir))
	}
	k, err := newCAKeeper(dataDir, mat.ident.CA)
	if err != nil {
		return err
	}
	if k.get() == nil {
		return fmt.Errorf("this node holds no copy of the cluster's CA key (%s): it was no voter, and a node without the key could not lead the recovered cluster; recover on a node that was a voter", k.path)
	}
	return nil
}

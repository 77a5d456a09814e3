package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/store"
)

// clusterRecords are the records a leader puts in Raft at the start of
// its term, before it plans: the cluster's id and secrets that bootstrap
// made (once), and the previous release's secrets moved out of the clear.
// Only the leader's loop calls it, one term at a time.
type clusterRecords struct {
	dataDir string
	state   secretsState
	writes  localWriter
	caKey   caKeyHolder
	raft    runningRaft
	log     *slog.Logger
}

// secretsState is what the replicated state holds of the cluster's id and
// secrets.
type secretsState interface {
	ClusterID() (string, error)
	Secrets() (store.Secrets, bool, error)
	LegacySecrets() (store.LegacySecrets, bool, error)
}

// caKeyHolder keeps the CA's private key on this node (caKeeper).
type caKeyHolder interface {
	get() *pki.CA
	put(keyPEM []byte) error
}

var (
	_ secretsState = (*store.Store)(nil)
	_ caKeyHolder  = (*caKeeper)(nil)
)

func newClusterRecords(dataDir string, state secretsState, writes localWriter, caKey caKeyHolder, r runningRaft, log *slog.Logger) *clusterRecords {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &clusterRecords{dataDir: dataDir, state: state, writes: writes, caKey: caKey, raft: r, log: log}
}

// writeBootstrap puts what bootstrap made into Raft, once: the cluster id
// and the sealed secrets. Until then they wait in DATA/tls/bootstrap.json,
// which goes once they are committed. A bootstrap.json of the previous
// release (secrets in clear) is committed as that release did, for
// migrateSecrets to replace.
func (c *clusterRecords) writeBootstrap() error {
	pending, err := pendingBootstrap(c.dataDir)
	if err != nil {
		return err
	}
	if id, _ := c.state.ClusterID(); id == "" {
		var cid string
		if pending != nil {
			cid = pending.ClusterID
		} else {
			var b [16]byte
			rand.Read(b[:])
			cid = hex.EncodeToString(b[:])
		}
		if _, err := c.writes.applyLocal(store.Bootstrap{ClusterID: cid}, 10*time.Second); err != nil {
			return err
		}
	}
	if pending == nil {
		return nil
	}
	_, sealed, err := c.state.Secrets()
	if err != nil {
		return err
	}
	_, legacy, err := c.state.LegacySecrets()
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
		if _, err := c.writes.applyLocal(cmd, 10*time.Second); err != nil {
			return err
		}
	}
	return os.Remove(filepath.Join(tlsDir(c.dataDir), bootstrapFile))
}

// migrateSecrets replaces the previous release's record, which held the
// CA's key and the join secret in clear on every replica: the leader keeps
// the key in its own DATA/tls/ca.key (the other voters fetch it from
// there) and commits the sealed record, which deletes the old one from
// every replica's state.
func (c *clusterRecords) migrateSecrets(log *slog.Logger) error {
	legacy, ok, err := c.state.LegacySecrets()
	if err != nil || !ok {
		return err
	}
	if c.caKey.get() == nil {
		if err := c.caKey.put(legacy.CAKey); err != nil {
			return fmt.Errorf("keep the CA key: %w", err)
		}
	}
	sec, ok, err := c.state.Secrets()
	if err != nil {
		return err
	}
	if !ok {
		sealed, err := c.caKey.get().SealSecret(legacy.JoinSecret)
		if err != nil {
			return err
		}
		sec = store.Secrets{SealedJoinSecret: sealed, AdminKeys: legacy.AdminKeys}
	}
	if _, err := c.writes.applyLocal(store.PutSealedSecrets{Secrets: sec}, 10*time.Second); err != nil {
		return err
	}
	if err := c.compactLog(); err != nil {
		log.Warn("compact the Raft log after moving the secrets: nodes that join may still receive the old record", "err", err)
	}
	log.Warn("moved the cluster's secrets out of the clear: the CA key is now on the voters only, the join secret sealed; older Raft log segments, snapshots and free pages of state.db may still hold them until overwritten: rotate the join secret with shoal token --rotate")
	return nil
}

// compactLog snapshots the state and drops the whole log before it, so
// that a node that joins from now on receives the snapshot, which holds
// the sealed record only, rather than the old record's entry.
func (c *clusterRecords) compactLog() error {
	r := c.raft.r()
	rc := r.ReloadableConfig()
	keep := rc.TrailingLogs
	rc.TrailingLogs = 0
	if err := r.ReloadConfig(rc); err != nil {
		return err
	}
	defer func() {
		rc.TrailingLogs = keep
		if err := r.ReloadConfig(rc); err != nil {
			c.log.Warn("restore the Raft log's trailing entries", "err", err)
		}
	}()
	return r.Snapshot().Error()
}

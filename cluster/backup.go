package cluster

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/store"
)

// Backup encodes the desired state for `shoal snapshot save`. With a
// leader it holds every acknowledged write; without one it is this
// replica's state, which the log says.
func (n *Node) Backup(ctx context.Context) ([]byte, error) {
	if err := n.Linearize(ctx); err != nil {
		n.log.Warn("snapshot save: no leader to confirm the state: saving this replica's", "err", err)
	}
	return n.store.Backup(time.Now())
}

// Restore brings a backup's apps and node settings into this cluster,
// which must have no apps yet.
func (n *Node) Restore(ctx context.Context, r io.Reader) (api.RestoreResult, error) {
	b, err := store.ReadBackup(r)
	if err != nil {
		return api.RestoreResult{}, fmt.Errorf("%w: %v", api.ErrInvalid, err)
	}
	if err := n.writes.write(ctx, store.RestoreBackup{Backup: b}, nil); err != nil {
		return api.RestoreResult{}, err
	}
	return api.RestoreResult{ClusterID: b.ClusterID, Apps: len(b.Apps), Nodes: len(b.Nodes)}, nil
}

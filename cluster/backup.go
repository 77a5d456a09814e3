package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/apiserver"
	"github.com/shoal-edge/shoal/store"
)

// backups answers `shoal snapshot save` and `restore` (apiserver.Backups).
type backups struct {
	state  backupSource
	reads  linearizer
	writes commandWriter
	log    *slog.Logger
}

// backupSource encodes the desired state this replica holds.
type backupSource interface {
	Backup(now time.Time) ([]byte, error)
}

// linearizer waits until this replica holds every write the leader had
// accepted (reads.Linearize).
type linearizer interface {
	Linearize(ctx context.Context) error
}

// commandWriter commits a command through Raft, on the leader wherever it
// is (writes.write).
type commandWriter interface {
	write(ctx context.Context, cmd any, out any) error
}

var (
	_ apiserver.Backups = (*backups)(nil)
	_ backupSource      = (*store.Store)(nil)
	_ linearizer        = (*reads)(nil)
	_ commandWriter     = (*writes)(nil)
)

func newBackups(state backupSource, reads linearizer, writes commandWriter, log *slog.Logger) *backups {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &backups{state: state, reads: reads, writes: writes, log: log}
}

// Backup encodes the desired state for `shoal snapshot save`. With a
// leader it holds every acknowledged write; without one it is this
// replica's state, which the log says.
func (b *backups) Backup(ctx context.Context) ([]byte, error) {
	if err := b.reads.Linearize(ctx); err != nil {
		b.log.Warn("snapshot save: no leader to confirm the state: saving this replica's", "err", err)
	}
	return b.state.Backup(time.Now())
}

// Restore brings a backup's apps and node settings into this cluster,
// which must have no apps yet.
func (b *backups) Restore(ctx context.Context, r io.Reader) (api.RestoreResult, error) {
	bk, err := store.ReadBackup(r)
	if err != nil {
		return api.RestoreResult{}, fmt.Errorf("%w: %v", api.ErrInvalid, err)
	}
	if err := b.writes.write(ctx, store.RestoreBackup{Backup: bk}, nil); err != nil {
		return api.RestoreResult{}, err
	}
	return api.RestoreResult{ClusterID: bk.ClusterID, Apps: len(bk.Apps), Nodes: len(bk.Nodes)}, nil
}

package cluster

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/store"
)

// noLeader is a replica that cannot confirm its state with a leader.
type noLeader struct{}

func (noLeader) Linearize(context.Context) error { return api.ErrNoLeader }

// recordedWrites keeps the commands it is given.
type recordedWrites struct{ cmds []any }

func (w *recordedWrites) write(_ context.Context, cmd any, _ any) error {
	w.cmds = append(w.cmds, cmd)
	return nil
}

// The backup backend alone, over a real state file: without a leader a
// save is this replica's state (and says so in the log); what it saved
// restores as one RestoreBackup command; a damaged backup is refused as
// invalid and writes nothing.
func TestBackupsAlone(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var logged testutil.SyncBuffer
	w := &recordedWrites{}
	b := newBackups(st, noLeader{}, w, slog.New(slog.NewTextHandler(&logged, nil)))
	ctx := context.Background()

	saved, err := b.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logged.String(), "saving this replica's") {
		t.Errorf("a save without a leader logged %q", logged.String())
	}
	if _, err := b.Restore(ctx, bytes.NewReader(saved)); err != nil {
		t.Fatal(err)
	}
	if len(w.cmds) != 1 {
		t.Fatalf("restore wrote %d commands, want 1", len(w.cmds))
	}
	if _, ok := w.cmds[0].(store.RestoreBackup); !ok {
		t.Errorf("restore wrote %T, want store.RestoreBackup", w.cmds[0])
	}

	damaged := bytes.Replace(saved, []byte("cluster_id"), []byte("cluster_ID"), 1)
	if _, err := b.Restore(ctx, bytes.NewReader(damaged)); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("restore of a damaged backup: %v, want api.ErrInvalid", err)
	}
	if len(w.cmds) != 1 {
		t.Errorf("a damaged backup was written")
	}
}

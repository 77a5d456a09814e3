package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// A consistent read does not wait for entries the state file never counts
// (no-ops, barriers, configurations) when they are the log's last.
func TestLinearizeAfterNonCommandEntries(t *testing.T) {
	n, _ := startNode(t, t.TempDir(), "a")
	ctx := context.Background()
	// The leader registers the node first.
	testutil.WaitFor(t, 10*time.Second, func() error {
		return n.fleet.Label(ctx, "a", api.LabelRequest{Set: map[string]string{"k": "v"}})
	})
	if err := n.raft.r().Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if n.raft.r().LastIndex() <= n.store.AppliedIndex() {
		t.Fatalf("the barrier is not above the state file's index: last %d applied %d", n.raft.r().LastIndex(), n.store.AppliedIndex())
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := n.Linearize(ctx); err != nil {
		t.Fatalf("linearize after a barrier: %v", err)
	}
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// raftApplied is a replica over a real Raft whose state is the test's
// FSM, polled.
type raftApplied struct{ *raftOnStream }

func (r raftApplied) r() *raft.Raft { return r.raftOnStream.r }
func (r raftApplied) noCommandsIn(from, to uint64) bool {
	return noCommandsIn(r.raftOnStream.r, r.logs, from, to)
}
func (r raftApplied) AppliedIndex() uint64     { return r.fsm.AppliedIndex() }
func (r raftApplied) Changed() <-chan struct{} { return nil }

// Reads alone, on a real two-voter Raft over loopback: once Linearize
// returns on the follower, it holds a write the leader had accepted before
// (asked through the leader's read index); without a leader, Linearize
// fails as api.ErrNoLeader.
func TestReadsWaitForTheLeadersIndex(t *testing.T) {
	a, b := leaderAndFollower(t, true)
	caller := &loopbackCaller{readers: map[raft.ServerAddress]*reads{}}
	ra := newReads("a", raftApplied{a}, raftApplied{a}, caller)
	rb := newReads("b", raftApplied{b}, raftApplied{b}, caller)
	caller.readers[a.trans.LocalAddr()] = ra
	caller.readers[b.trans.LocalAddr()] = rb
	ctx := context.Background()
	testutil.WaitFor(t, 10*time.Second, func() error { return rb.Linearize(ctx) })

	for i := range 20 {
		entry := fmt.Sprintf("entry %d", i)
		if err := a.r.Apply([]byte(entry), 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
		if err := rb.Linearize(ctx); err != nil {
			t.Fatalf("linearize on the follower: %v", err)
		}
		if logs := b.fsm.Logs(); len(logs) != i+1 || string(logs[i]) != entry {
			t.Fatalf("after linearize the follower holds %q; want %d entries, the last %q", logs, i+1, entry)
		}
	}
	if err := ra.Linearize(ctx); err != nil {
		t.Errorf("linearize on the leader: %v", err)
	}

	if err := a.r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	if err := rb.Linearize(ctx); !errors.Is(err, api.ErrNoLeader) {
		t.Errorf("linearize without a leader: %v, want api.ErrNoLeader", err)
	}
}

// Entries below the log's first (a follower that installed a snapshot
// keeps none below it) hold no command the state file lacks; a command
// the log holds still counts.
func TestNoCommandsBelowTheLog(t *testing.T) {
	a, _ := leaderAndFollower(t, true)
	for i := range 4 {
		if err := a.r.Apply([]byte(fmt.Sprint("entry ", i)), 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	to := a.r.CommitIndex()
	logs := raft.NewInmemStore()
	for i := to - 1; i <= to; i++ {
		if err := logs.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogNoop}); err != nil {
			t.Fatal(err)
		}
	}
	if !noCommandsIn(a.r, logs, 1, to) {
		t.Errorf("entries 1 to %d, the log holding no-ops from %d: a command taken as missing", to, to-1)
	}
	if err := logs.StoreLog(&raft.Log{Index: to, Term: 1, Type: raft.LogCommand}); err != nil {
		t.Fatal(err)
	}
	if noCommandsIn(a.r, logs, 1, to) {
		t.Errorf("a command at %d in the log not counted", to)
	}
}

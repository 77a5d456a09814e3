package cluster

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/store"
)

// reads makes a read on this replica consistent: it waits until the
// replica holds every write the leader had accepted (a read index, asked
// of the leader over the node protocol, GET /v1/read-index, served by
// serveReadIndex). Safe for concurrent use: it keeps no state of its own.
type reads struct {
	self   string // this node's Raft server id
	raft   raftIndex
	state  appliedState
	leader leaderCaller
}

// raftIndex is what reads need of Raft: the running one, and whether a
// span of its committed log holds no command.
type raftIndex interface {
	runningRaft
	noCommandsIn(from, to uint64) bool
}

// appliedState is how far the state file has applied the log, and a
// signal when it moves.
type appliedState interface {
	AppliedIndex() uint64
	Changed() <-chan struct{}
}

var (
	_ raftIndex    = (*raftParts)(nil)
	_ appliedState = (*store.Store)(nil)
)

func newReads(self string, r raftIndex, state appliedState, leader leaderCaller) *reads {
	return &reads{self: self, raft: r, state: state, leader: leader}
}

// readIndexAnswer is the leader's read index.
type readIndexAnswer struct {
	Index uint64 `json:"index"`
}

// Linearize waits until this replica holds every write the leader had
// accepted when it was asked, the leader having confirmed it still leads
// (a read index: no log entry is written for a read).
func (n *Node) Linearize(ctx context.Context) error { return n.reads.Linearize(ctx) }

// Linearize: see Node.Linearize.
func (rd *reads) Linearize(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	idx, err := rd.readIndex(ctx)
	if err != nil {
		return err
	}
	return rd.waitApplied(ctx, idx)
}

// waitApplied returns once the state file holds every command up to idx.
// The file's index counts commands only: Raft keeps no-op, barrier and
// configuration entries from the state machine, so committed entries above
// it that carry no command count as held.
func (rd *reads) waitApplied(ctx context.Context, idx uint64) error {
	for {
		changed := rd.state.Changed()
		applied := rd.state.AppliedIndex()
		if applied >= idx || rd.raft.noCommandsIn(applied+1, idx) {
			return nil
		}
		select {
		case <-changed:
		case <-time.After(20 * time.Millisecond): // the commit index moves without a signal
		case <-ctx.Done():
			return fmt.Errorf("%w: wait for entry %d (at %d): %v", api.ErrNoLeader, idx, applied, ctx.Err())
		}
	}
}

func (rd *reads) readIndex(ctx context.Context) (uint64, error) {
	r := rd.raft.r()
	if r.State() == raft.Leader {
		// LastIndex, not CommitIndex: it covers this term's first entry,
		// which a new leader has not necessarily committed yet.
		idx := r.LastIndex()
		if err := r.VerifyLeader().Error(); err != nil {
			return 0, fmt.Errorf("%w: %v", api.ErrNoLeader, err)
		}
		return idx, nil
	}
	addr, id := r.LeaderWithID()
	if addr == "" || string(id) == rd.self {
		return 0, fmt.Errorf("%w: this node knows of no leader", api.ErrNoLeader)
	}
	resp, err := rd.leader.nodeRequest(ctx, http.MethodGet, addr, "/v1/read-index", nil)
	if err != nil {
		_, hp := splitRaftAddr(addr)
		return 0, fmt.Errorf("%w: the leader at %s did not answer: %v", api.ErrNoLeader, hp, err)
	}
	defer resp.Body.Close()
	var ri readIndexAnswer
	if _, err := readAnswer(resp, &ri); err != nil {
		return 0, fmt.Errorf("read index from the leader: %w", err)
	}
	return ri.Index, nil
}

// serveReadIndex is the leader's side of readIndex.
func (rd *reads) serveReadIndex(w http.ResponseWriter, r *http.Request) {
	if rd.raft.r().State() != raft.Leader {
		writeAnswer(w, nil, errLeadershipMoved, true)
		return
	}
	idx, err := rd.readIndex(r.Context())
	writeAnswer(w, readIndexAnswer{Index: idx}, err, false)
}

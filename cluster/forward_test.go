package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// fixedRaft is a Raft that is never restarted.
type fixedRaft struct{ *raft.Raft }

func (f fixedRaft) r() *raft.Raft { return f.Raft }

// loopbackCaller serves the node protocol's writes of the nodes it knows
// in process: the leader's side of a forwarded write is its serveApply.
type loopbackCaller struct {
	nodes   map[raft.ServerAddress]*writes
	readers map[raft.ServerAddress]*reads
	calls   atomic.Int32
}

func (l *loopbackCaller) nodeRequest(ctx context.Context, method string, addr raft.ServerAddress, path string, body io.Reader) (*http.Response, error) {
	l.calls.Add(1)
	var serve http.HandlerFunc
	switch path {
	case "/v1/apply":
		if w, ok := l.nodes[addr]; ok {
			serve = w.serveApply
		}
	case "/v1/read-index":
		if rd, ok := l.readers[addr]; ok {
			serve = rd.serveReadIndex
		}
	}
	if serve == nil {
		return nil, &dialError{fmt.Errorf("no node serves %s%s", addr, path)}
	}
	rec := httptest.NewRecorder()
	serve(rec, httptest.NewRequestWithContext(ctx, method, "https://node"+path, body))
	return rec.Result(), nil
}

// diskGuard refuses every write while full.
type diskGuard struct{ full atomic.Bool }

func (g *diskGuard) checkDiskForWrite(int) error {
	if g.full.Load() {
		return fmt.Errorf("%w: the test's disk", api.ErrNoSpace)
	}
	return nil
}

func (g *diskGuard) asNotVoter(err error) error { return err }

// Writes alone, on a real two-voter Raft over loopback: a write on the
// follower goes to the leader and is applied once, with the FSM's answer
// back; a write on the leader is applied there without a call; a write
// the disk has no room for goes nowhere; without a leader a write fails
// within writeTimeout as api.ErrNoLeader instead of hanging.
func TestWritesReachTheLeader(t *testing.T) {
	a, b := leaderAndFollower(t, true)
	caller := &loopbackCaller{nodes: map[raft.ServerAddress]*writes{}}
	guard := &diskGuard{}
	wa := newWrites("a", fixedRaft{a.r}, caller, guard, guard)
	wb := newWrites("b", fixedRaft{b.r}, caller, guard, guard)
	caller.nodes[a.trans.LocalAddr()] = wa
	caller.nodes[b.trans.LocalAddr()] = wb
	ctx := context.Background()

	var got int
	if err := wb.forward(ctx, []byte("from b"), &got); err != nil {
		t.Fatalf("write on the follower: %v", err)
	}
	if got != 1 || caller.calls.Load() != 1 {
		t.Errorf("write on the follower: answer %d after %d calls, want 1 after 1", got, caller.calls.Load())
	}
	if err := wa.forward(ctx, []byte("from a"), &got); err != nil {
		t.Fatalf("write on the leader: %v", err)
	}
	if got != 2 || caller.calls.Load() != 1 {
		t.Errorf("write on the leader: answer %d after %d calls, want 2 after 1", got, caller.calls.Load())
	}
	want := [][]byte{[]byte("from b"), []byte("from a")}
	testutil.WaitFor(t, 10*time.Second, func() error {
		for name, s := range map[string]*raftOnStream{"a": a, "b": b} {
			if logs := s.fsm.Logs(); !slices.EqualFunc(logs, want, func(x, y []byte) bool { return string(x) == string(y) }) {
				return fmt.Errorf("%s applied %q", name, logs)
			}
		}
		return nil
	})

	guard.full.Store(true)
	if err := wb.forward(ctx, []byte("too big"), nil); !errors.Is(err, api.ErrNoSpace) {
		t.Errorf("write with a full disk: %v, want api.ErrNoSpace", err)
	}
	guard.full.Store(false)
	if n := len(a.fsm.Logs()); n != 2 {
		t.Errorf("a refused write was applied: %d entries", n)
	}

	// One voter of two left: no leader can be elected.
	if err := a.r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := wb.forward(ctx, []byte("lost"), nil)
	if !errors.Is(err, api.ErrNoLeader) {
		t.Errorf("write without a leader: %v, want api.ErrNoLeader", err)
	}
	if d := time.Since(start); d > writeTimeout+5*time.Second {
		t.Errorf("write without a leader took %s", d)
	}
}

package cluster

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// raftOnStream is a real Raft server whose transport is a stream layer on
// a loopback listener; dialed records the addresses its dialer was given.
type raftOnStream struct {
	r     *raft.Raft
	trans *raft.NetworkTransport
	fsm   *indexedFSM
	logs  raft.LogStore

	mu     sync.Mutex // guards following
	dialed []raft.ServerAddress
}

func startRaftOnStream(t *testing.T, id string) *raftOnStream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &raftOnStream{fsm: &indexedFSM{MockFSM: &raft.MockFSM{}}}
	// Plain TCP stands in for the cluster port's TLS: what is under test
	// is that Raft speaks through the layer, by the addresses it names.
	dial := func(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
		s.mu.Lock()
		s.dialed = append(s.dialed, addr)
		s.mu.Unlock()
		_, hp := splitRaftAddr(addr)
		return net.DialTimeout("tcp", hp, timeout)
	}
	s.trans = newRaftTransport(newStreamLayer(ln, peerAddr{id: id, Addr: ln.Addr()}, dial), testutil.Logger(t))
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(id)
	conf.Logger = hclogFor(testutil.Logger(t), "raft")
	conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	logs := raft.NewInmemStore()
	s.logs = logs
	if id == "a" {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: s.trans.LocalAddr(), Suffrage: raft.Voter}}}
		if err := raft.BootstrapCluster(conf, logs, logs, raft.NewInmemSnapshotStore(), s.trans, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if s.r, err = raft.NewRaft(conf, s.fsm, logs, logs, raft.NewInmemSnapshotStore(), s.trans); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.r.Shutdown().Error(); err != nil {
			t.Errorf("shut down raft %s: %v", id, err)
		}
	})
	return s
}

// indexedFSM is the test's state machine: every entry, and the index of
// the last one it applied. Raft's own AppliedIndex moves when an entry is
// handed to the FSM, before the FSM holds it.
type indexedFSM struct {
	*raft.MockFSM
	applied atomic.Uint64
}

func (f *indexedFSM) Apply(l *raft.Log) any {
	out := f.MockFSM.Apply(l)
	f.applied.Store(l.Index)
	return out
}

// AppliedIndex is the index of the last entry the FSM holds.
func (f *indexedFSM) AppliedIndex() uint64 { return f.applied.Load() }

// leaderAndFollower starts a, which leads, and b, which it adds as a voter
// (or a non-voter: then a keeps leading however slow the test), and
// returns once b knows a as its leader.
func leaderAndFollower(t *testing.T, voter bool) (a, b *raftOnStream) {
	t.Helper()
	a, b = startRaftOnStream(t, "a"), startRaftOnStream(t, "b")
	testutil.WaitFor(t, 10*time.Second, func() error {
		if a.r.State() != raft.Leader {
			return fmt.Errorf("a is %s", a.r.State())
		}
		return nil
	})
	add := a.r.AddNonvoter
	if voter {
		add = a.r.AddVoter
	}
	if err := add("b", b.trans.LocalAddr(), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if addr, _ := b.r.LeaderWithID(); addr != a.trans.LocalAddr() {
			return fmt.Errorf("b knows leader %q", addr)
		}
		return nil
	})
	return a, b
}

func (s *raftOnStream) dialedTo(addr raft.ServerAddress) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.dialed, addr)
}

// The stream layer alone carries Raft: a server advertises its id with
// its address, a second one joins through it, and an entry reaches both,
// every outbound connection going through the layer's dialer with the
// address (and so the node id) Raft names.
func TestRaftOverTheStreamLayer(t *testing.T) {
	a := startRaftOnStream(t, "a")
	b := startRaftOnStream(t, "b")
	if id, _ := splitRaftAddr(b.trans.LocalAddr()); id != "b" {
		t.Fatalf("b advertises %q: want its id with the address", b.trans.LocalAddr())
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if a.r.State() != raft.Leader {
			return fmt.Errorf("a is %s", a.r.State())
		}
		return nil
	})
	if err := a.r.AddVoter("b", b.trans.LocalAddr(), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if err := a.r.Apply([]byte("hello"), 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if logs := b.fsm.Logs(); len(logs) != 1 || !bytes.Equal(logs[0], []byte("hello")) {
			return fmt.Errorf("b applied %q", logs)
		}
		return nil
	})
	if !a.dialedTo(b.trans.LocalAddr()) {
		t.Errorf("a reached b without its dialer (dialed %v)", a.dialed)
	}
}

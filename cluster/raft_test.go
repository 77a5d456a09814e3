package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/store"
)

// loopbackPort stands in for the cluster port: one plain TCP listener at
// a fixed address, listened on again when renewed.
type loopbackPort struct {
	addr string

	mu     sync.Mutex // guards following
	ln     net.Listener
	renews int
}

func (p *loopbackPort) Listener(string) net.Listener {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ln
}

func (p *loopbackPort) Renew(string) net.Listener {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ln.Close()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		panic(err) // the test's own port, just closed
	}
	p.ln = ln
	p.renews++
	return ln
}

// raftPartsNode is what a node gives its Raft, in the test: a real state
// file, a plain TCP dialer that records the protocols it was asked for,
// and records of voter starts and announced epochs.
type raftPartsNode struct {
	dir    string
	st     *store.Store
	port   *loopbackPort
	epoch  atomic.Uint64
	notify chan bool
	p      *raftParts

	mu        sync.Mutex // guards following
	protos    []string
	voterRuns int
	announced []uint64
}

func (n *raftPartsNode) dialNode(_ context.Context, addr raft.ServerAddress, proto string, timeout time.Duration) (net.Conn, error) {
	n.mu.Lock()
	n.protos = append(n.protos, proto)
	n.mu.Unlock()
	_, hp := splitRaftAddr(addr)
	return net.DialTimeout("tcp", hp, timeout)
}

func (n *raftPartsNode) startAsVoter() {
	n.mu.Lock()
	n.voterRuns++
	n.mu.Unlock()
}

func (n *raftPartsNode) voterStarts() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.voterRuns
}

func (n *raftPartsNode) dialedWith(proto string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Contains(n.protos, proto)
}

func newRaftPartsNode(t *testing.T) *raftPartsNode {
	t.Helper()
	return raftPartsNodeAt(t, t.TempDir())
}

// raftPartsNodeAt opens the state file of data dir dir; Raft is opened
// with open.
func raftPartsNodeAt(t *testing.T, dir string) *raftPartsNode {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &raftPartsNode{dir: dir, st: st, notify: make(chan bool, 64)}
}

// open starts n's Raft at addr (host:port; port 0 for a new one).
func (n *raftPartsNode) open(t *testing.T, id, addr string, bootstrap bool) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	n.port = &loopbackPort{addr: ln.Addr().String(), ln: ln}
	host, port, _ := net.SplitHostPort(n.port.addr)
	portNum, _ := strconv.Atoi(port)
	p, err := openRaft(raftPartsConfig{ID: id, DataDir: n.dir, Advertise: host, Port: portNum, Bootstrap: bootstrap,
		State: n.st, RaftPort: n.port, Dial: n, Epoch: &n.epoch, Voter: n, Notify: n.notify,
		AnnounceEpoch: func(e uint64) {
			n.mu.Lock()
			n.announced = append(n.announced, e)
			n.mu.Unlock()
		},
		Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	n.p = p
	t.Cleanup(func() {
		if n.p == p {
			p.close()
		}
	})
}

// close stops n's Raft; its data dir and state file stay.
func (n *raftPartsNode) close(t *testing.T) {
	t.Helper()
	if err := n.p.close(); err != nil {
		t.Fatal(err)
	}
	n.p = nil
}

func (n *raftPartsNode) timeouts() (heartbeat, election time.Duration) {
	c := n.p.r().ReloadableConfig()
	return c.HeartbeatTimeout, c.ElectionTimeout
}

// applyOnLeader commits a node record through whichever of nodes leads,
// and waits until every one of them holds it in its state file.
func applyOnLeader(t *testing.T, name string, nodes ...*raftPartsNode) {
	t.Helper()
	data, err := store.Encode(store.NodeFacts{Node: store.NodeRecord{Name: name, ID: "id-" + name, Address: "127.0.0.1",
		Port: 7000, GossipPort: 7946, Arch: goarch(), OS: "linux"}})
	if err != nil {
		t.Fatal(err)
	}
	var index uint64
	testutil.WaitFor(t, 20*time.Second, func() error {
		for _, n := range nodes {
			if n.p.r().State() != raft.Leader {
				continue
			}
			f := n.p.r().Apply(data, 5*time.Second)
			if err := f.Error(); err != nil {
				return err
			}
			index = f.Index()
			return nil
		}
		return errors.New("no leader")
	})
	testutil.WaitFor(t, 20*time.Second, func() error {
		for i, n := range nodes {
			if got := n.st.AppliedIndex(); got < index {
				return fmt.Errorf("node %d applied %d of %d", i, got, index)
			}
		}
		return nil
	})
}

// This node's Raft alone, two of them over loopback TCP on real raft-wal
// stores: a bootstrap node runs a lone voter's timeouts, starts as a voter
// and leads; a second server joins, and relaxRaft restarts the first with
// a cluster's timeouts on a renewed listener, the log kept. A restart
// reads the stored configuration: two voters, so the cluster's timeouts
// and the voter's start. A rejoin at a newer epoch drops the Raft state
// and the replicated state, writes and announces the epoch and dials with
// its protocol; the leader then brings the node back.
func TestRaftPartsAlone(t *testing.T) {
	a, b := newRaftPartsNode(t), newRaftPartsNode(t)
	a.open(t, "a", "127.0.0.1:0", true)
	if !a.p.isFast() {
		t.Error("a bootstrap node runs a cluster's timeouts")
	}
	if hb, el := a.timeouts(); hb != 100*time.Millisecond || el != 100*time.Millisecond {
		t.Errorf("a lone voter's timeouts are %v and %v, want 100ms", hb, el)
	}
	if a.voterStarts() != 1 {
		t.Errorf("a bootstrap node started as a voter %d times, want once", a.voterStarts())
	}
	select {
	case led := <-a.notify:
		if !led {
			t.Error("Raft's first word to a bootstrap node is not leadership")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a bootstrap node was never told it leads")
	}

	b.open(t, "b", "127.0.0.1:0", false)
	if b.p.isFast() || b.voterStarts() != 0 {
		t.Errorf("a fresh node that waits to be added: fast %v, voter starts %d", b.p.isFast(), b.voterStarts())
	}
	if err := a.p.r().AddVoter("b", b.p.trans.LocalAddr(), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	applyOnLeader(t, "n1", a, b)
	if !a.dialedWith(pki.RaftProto(0)) {
		t.Errorf("a dialed with %v, want %s", a.protos, pki.RaftProto(0))
	}

	if err := a.p.relaxRaft(); err != nil {
		t.Fatal(err)
	}
	if a.p.isFast() || a.port.renews != 1 {
		t.Errorf("after relaxRaft: fast %v, listener renewed %d times", a.p.isFast(), a.port.renews)
	}
	if hb, el := a.timeouts(); hb != 500*time.Millisecond || el != 500*time.Millisecond {
		t.Errorf("a cluster's timeouts are %v and %v, want 500ms", hb, el)
	}
	applyOnLeader(t, "n2", a, b)

	// b stays alone and cannot elect: its rejoin finds nobody to take
	// entries from until a is back.
	aAddr := a.port.addr
	a.close(t)
	if err := b.p.rejoin(3); err != nil {
		t.Fatal(err)
	}
	if got, err := readEpoch(b.dir); err != nil || got != 3 || b.epoch.Load() != 3 {
		t.Errorf("epoch after the rejoin: file %d (%v), counter %d, want 3", got, err, b.epoch.Load())
	}
	if !slices.Equal(b.announced, []uint64{3}) {
		t.Errorf("announced epochs %v, want [3]", b.announced)
	}
	if last := b.p.r().LastIndex(); last != 0 {
		t.Errorf("the rejoined Raft's log ends at %d, want empty", last)
	}
	if got := b.st.AppliedIndex(); got != 0 {
		t.Errorf("the rejoined state file has applied %d, want none", got)
	}
	if err := b.p.rejoin(2); err != nil || b.epoch.Load() != 3 {
		t.Errorf("a rejoin at an older epoch: %v, epoch %d", err, b.epoch.Load())
	}
	if c, err := b.p.dialRaft(raft.ServerAddress("a@"+aAddr), time.Second); err == nil {
		c.Close()
	}
	if !b.dialedWith(pki.RaftProto(3)) {
		t.Errorf("b dialed with %v after the rejoin, want %s", b.protos, pki.RaftProto(3))
	}

	a.open(t, "a", aAddr, false)
	if a.p.isFast() || a.voterStarts() != 2 {
		t.Errorf("a voter of two restarted: fast %v, voter starts %d (want 2 in all)", a.p.isFast(), a.voterStarts())
	}
	applyOnLeader(t, "n3", a, b)
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/store"
)

// raftParts are the pieces of Raft this node owns and closes. Raft itself
// is restarted once in a node's life at most (see relaxRaft): readers go
// through r().
type raftParts struct {
	wal   *raftwal.WAL
	meta  *metadb.BoltMetaDB
	snaps raft.SnapshotStore

	cur atomic.Pointer[raft.Raft]

	mu     sync.Mutex // guards following
	trans  *raft.NetworkTransport
	stream *streamLayer // trans's
	adv    peerAddr
	fast   bool // a lone voter's timeouts
}

// r is the running Raft.
func (p *raftParts) r() *raft.Raft { return p.cur.Load() }

func (p *raftParts) isFast() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fast
}

// streamLayer carries Raft over the cluster port: inbound connections come
// from the port's Raft listener, outbound ones are opened by dial (on a
// node: its port with the Raft protocol and this node's certificate).
//
// It holds on to the inbound connections, because the network transport
// does not: when Raft stops (the node stops, or restarts Raft in relaxRaft
// or rejoin) they stay open, and the next command the leader sends on one
// reaches a transport that is shutting down, which logs it as an ERROR
// ("failed to decode incoming command: transport shutdown"). hangUp closes
// them before Raft stops; the transport's reader then sees the end of the
// stream, and the leader a closed connection, as from a stopped node.
type streamLayer struct {
	net.Listener
	advertise peerAddr
	dial      raftDialer

	mu      sync.Mutex // guards following
	inbound map[*inboundConn]struct{}
	hungUp  bool
}

// raftDialer opens a Raft connection to the node of a Raft address.
type raftDialer func(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error)

func newStreamLayer(ln net.Listener, advertise peerAddr, dial raftDialer) *streamLayer {
	return &streamLayer{Listener: ln, advertise: advertise, dial: dial}
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Accept() (net.Conn, error) {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		if s.hungUp {
			// Raft is stopping: an error here would be logged and
			// retried; the peer sees a closed connection instead.
			s.mu.Unlock()
			c.Close()
			continue
		}
		ic := &inboundConn{Conn: c, layer: s}
		if s.inbound == nil {
			s.inbound = map[*inboundConn]struct{}{}
		}
		s.inbound[ic] = struct{}{}
		s.mu.Unlock()
		return ic, nil
	}
}

// hangUp closes the inbound connections and any accepted from now on.
func (s *streamLayer) hangUp() {
	s.mu.Lock()
	s.hungUp = true
	conns := s.inbound
	s.inbound = nil
	s.mu.Unlock()
	for c := range conns {
		c.hangUp()
	}
}

func (s *streamLayer) Close() error {
	s.hangUp()
	return s.Listener.Close()
}

// inboundConn is a Raft connection another node opened. Once this side
// hung up, reads end as at the end of the stream (io.EOF), which the
// transport takes as the peer's goodbye and does not log, and writes are
// dropped: the transport logs every failed flush of a response as an
// ERROR, and the peer sees a closed connection all the same.
type inboundConn struct {
	net.Conn
	layer  *streamLayer
	hungUp atomic.Bool
}

func (c *inboundConn) hangUp() {
	c.hungUp.Store(true)
	c.Conn.Close()
}

func (c *inboundConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.hungUp.Load() {
		err = io.EOF
	}
	return n, err
}

func (c *inboundConn) Write(p []byte) (int, error) {
	if c.hungUp.Load() {
		return len(p), nil
	}
	n, err := c.Conn.Write(p)
	if err != nil && c.hungUp.Load() {
		return len(p), nil
	}
	return n, err
}

func (c *inboundConn) Close() error {
	c.layer.mu.Lock()
	delete(c.layer.inbound, c)
	c.layer.mu.Unlock()
	return c.Conn.Close()
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.dial(addr, timeout)
}

// newRaftTransport is Raft's transport over a stream layer.
func newRaftTransport(stream raft.StreamLayer, log *slog.Logger) *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 5 * time.Second,
		Logger:  hclogFor(log, "raft-net"),
	})
}

func raftConfig(id string, n *Node) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(id)
	c.Logger = hclogFor(n.peerLog, "raft")
	// A single-voter cluster elects itself after one heartbeat timeout;
	// 500 ms keeps bootstrap well under a second while staying tolerant of
	// a slow link between voters.
	c.HeartbeatTimeout = 500 * time.Millisecond
	c.ElectionTimeout = 500 * time.Millisecond
	// The lease as long as Raft allows (the heartbeat timeout): a leader
	// steps down when no majority answered it within the lease, and a
	// leader busy with a burst of container starts was seen to miss 250 ms
	// (its followers answered after 250-305 ms) and cost an election. The
	// followers' own timeouts decide the failover, not the lease; reads
	// confirm the leader by a round of heartbeats, not by the lease.
	c.LeaderLeaseTimeout = 500 * time.Millisecond
	// The FSM is durable (bbolt): no need to rebuild it from a snapshot on
	// every start, and fewer entries between snapshots spare the flash.
	c.NoSnapshotRestoreOnStart = true
	c.SnapshotThreshold = 1024
	c.TrailingLogs = 1024
	c.SnapshotInterval = 2 * time.Minute
	c.NotifyCh = n.leaderCh
	return c
}

// openRaft starts Raft; bootstrap makes a fresh node the single voter of a
// new cluster, otherwise a fresh node waits for the leader to add it.
func (n *Node) openRaft(id, advertise string, bootstrap bool) (*raftParts, error) {
	p, snaps, err := openRaftStores(n.cfg.DataDir, n.log)
	if err != nil {
		return nil, err
	}
	wal := p.wal
	adv, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(advertise, fmt.Sprint(n.cfg.Port)))
	if err != nil {
		p.close()
		return nil, err
	}
	p.adv = peerAddr{id: id, Addr: adv}
	if err := n.catchUpFSM(snaps); err != nil {
		p.close()
		return nil, err
	}
	existing, err := raft.HasExistingState(wal, wal, snaps)
	if err != nil {
		p.close()
		return nil, err
	}
	n.newTransport(p, n.port.Listener(pki.ProtoRaft))
	stored := n.storedConfiguration(existing, wal, snaps, p.trans)
	// Alone, the node need not wait out a timeout meant for a lossy link
	// to elect itself; relaxRaft gives it those once another server joins.
	p.fast = singleVoter(stored, n.id.ID) || !existing && bootstrap
	// Before Raft speaks: a voter of a previous release, or one that crashed
	// between a promotion and its new certificate, must not find its Raft
	// connections refused when it leads.
	if isVoterIn(stored, n.id.ID) || !existing && bootstrap {
		n.certs.startAsVoter()
	}
	conf := n.raftConfigFor(p.fast)
	if !existing && bootstrap {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: p.trans.LocalAddr(), Suffrage: raft.Voter}}}
		if err := raft.BootstrapCluster(conf, wal, wal, snaps, p.trans, cfg); err != nil {
			p.close()
			return nil, fmt.Errorf("bootstrap raft: %w", err)
		}
	}
	r, err := n.newRaft(p, conf)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	p.cur.Store(r)
	return p, nil
}

func (n *Node) newRaft(p *raftParts, conf *raft.Config) (*raft.Raft, error) {
	return raft.NewRaft(conf, n.store.FSM(), p.wal, p.wal, p.snaps, p.trans)
}

// newTransport makes p's transport over ln.
func (n *Node) newTransport(p *raftParts, ln net.Listener) {
	p.stream = newStreamLayer(ln, p.adv, n.dialRaft)
	p.trans = newRaftTransport(p.stream, n.peerLog)
}

// dialRaft opens a Raft connection to another node, at this node's epoch.
func (n *Node) dialRaft(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return n.dialNode(context.Background(), addr, pki.RaftProto(n.epoch.Load()), timeout)
}

// shutdown stops the running Raft: its inbound connections are closed
// first (see streamLayer).
func (p *raftParts) shutdown() error {
	if p.stream != nil {
		p.stream.hangUp()
	}
	return p.r().Shutdown().Error()
}

// raftConfigFor is the node's Raft configuration; fast for a lone voter.
func (n *Node) raftConfigFor(fast bool) *raft.Config {
	conf := raftConfig(n.id.ID, n)
	if fast {
		conf.HeartbeatTimeout = 100 * time.Millisecond
		conf.ElectionTimeout = 100 * time.Millisecond
		conf.LeaderLeaseTimeout = 100 * time.Millisecond
	}
	return conf
}

// relaxRaft restarts Raft with the timeouts of a lossy link once a lone
// voter's cluster has another server. ReloadConfig would raise the
// heartbeat and election timeouts but not the leader lease, and a 100 ms
// lease over a slow link makes the leader step down again and again. The
// restart costs one election (under a second), once in the cluster's life.
// It must not run on the leader loop, which the restart ends.
func (n *Node) relaxRaft() error {
	p := n.raft
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.fast {
		return nil
	}
	n.log.Info("raft: a second server joined: restarting with the timeouts of a lossy link")
	if err := p.shutdown(); err != nil {
		return fmt.Errorf("stop raft: %w", err)
	}
	// Shutdown closed the transport and with it the port's Raft listener.
	n.newTransport(p, n.port.Renew(pki.ProtoRaft))
	r, err := n.newRaft(p, n.raftConfigFor(false))
	if err != nil {
		return fmt.Errorf("restart raft: %w", err)
	}
	p.cur.Store(r)
	p.fast = false
	return nil
}

// openRaftStores opens DATA/raft: the log (raft-wal, with its meta
// database) and the snapshots.
func openRaftStores(dataDir string, log *slog.Logger) (*raftParts, raft.SnapshotStore, error) {
	dir := filepath.Join(dataDir, "raft")
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
		return nil, nil, err
	}
	// Small segments: raft-wal preallocates each one, and SD cards are small.
	// raft-wal's Close leaves its meta database open (and locked); we own
	// it so that a node can be stopped and started in one process.
	meta := &metadb.BoltMetaDB{}
	p := &raftParts{meta: meta}
	wal, err := raftwal.Open(filepath.Join(dir, "wal"), raftwal.WithSegmentSize(4<<20),
		raftwal.WithLogger(hclogFor(log, "raft-wal")), raftwal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, nil, fmt.Errorf("open raft log %s: %w", dir, err)
	}
	p.wal = wal
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclogFor(log, "snapshot"))
	if err != nil {
		p.close()
		return nil, nil, fmt.Errorf("open raft snapshots %s: %w", dir, err)
	}
	p.snaps = snaps
	return p, snaps, nil
}

// storedConfiguration is the Raft configuration in this node's log and
// snapshots, read before Raft starts; empty for a node without Raft state.
func (n *Node) storedConfiguration(existing bool, wal *raftwal.WAL, snaps raft.SnapshotStore, trans raft.Transport) raft.Configuration {
	if !existing {
		return raft.Configuration{}
	}
	// GetConfiguration reads the stores without starting Raft; it gets a
	// config of its own because it marks the one it is given.
	c, err := raft.GetConfiguration(raftConfig(n.id.ID, n), nopFSM{}, wal, wal, snaps, trans)
	if err != nil {
		n.log.Warn("read the stored Raft configuration", "err", err)
		return raft.Configuration{}
	}
	return c
}

// singleVoter reports whether id is the only voter of c.
func singleVoter(c raft.Configuration, id string) bool {
	voters := 0
	for _, s := range c.Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	return voters == 1 && isVoterIn(c, id)
}

// nopFSM stands in while only the configuration is read.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("not a real FSM") }
func (nopFSM) Restore(io.ReadCloser) error         { return errors.New("not a real FSM") }

// catchUpFSM restores the newest snapshot into the state file when the file
// is older than it (a lost or replaced state file). Raft does not do this
// itself because NoSnapshotRestoreOnStart trusts the durable FSM.
func (n *Node) catchUpFSM(snaps raft.SnapshotStore) error {
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	// Raft files a snapshot under its last entry, often a no-op or a
	// configuration the state file never counts: compare what it holds.
	if list[0].Index <= n.store.AppliedIndex() {
		return nil
	}
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", list[0].ID, err)
	}
	held, err := store.SnapshotIndex(rc)
	rc.Close()
	if err != nil {
		return err
	}
	if held <= n.store.AppliedIndex() {
		return nil
	}
	if _, rc, err = snaps.Open(list[0].ID); err != nil {
		return fmt.Errorf("open snapshot %s: %w", list[0].ID, err)
	}
	n.log.Warn("state file is behind the raft snapshot: restoring", "applied", n.store.AppliedIndex(), "snapshot", held)
	return n.store.FSM().Restore(rc)
}

func (p *raftParts) close() error {
	var errs []error
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.r() != nil {
		errs = append(errs, p.shutdown())
	}
	if p.trans != nil {
		errs = append(errs, p.trans.Close())
	}
	errs = append(errs, p.closeStores())
	return errors.Join(errs...)
}

// closeStores closes the log and its meta database.
func (p *raftParts) closeStores() error {
	var errs []error
	if p.wal != nil {
		errs = append(errs, p.wal.Close())
	}
	if p.meta != nil {
		errs = append(errs, p.meta.Close())
	}
	return errors.Join(errs...)
}

// noCommandsIn reports whether entries from..to are committed here and none
// of them is a command.
func (p *raftParts) noCommandsIn(from, to uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return noCommandsIn(p.r(), p.wal, from, to)
}

// noCommandsIn reports whether r has committed [from, to] and no entry of
// it, as logs holds them, is a command.
func noCommandsIn(r *raft.Raft, logs raft.LogStore, from, to uint64) bool {
	if r.CommitIndex() < to {
		return false
	}
	var l raft.Log
	for i := from; i <= to; i++ {
		if err := logs.GetLog(i, &l); err != nil || l.Type == raft.LogCommand {
			return false
		}
	}
	return true
}

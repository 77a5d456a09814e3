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
	"github.com/shoal-edge/shoal/cluster/port"
	"github.com/shoal-edge/shoal/store"
	"golang.org/x/sys/unix"
)

// raftParts are this node's Raft: its stores in DATA/raft, its transport
// over the cluster port, and Raft itself, which they open, restart and
// close. Raft is restarted with a cluster's timeouts once a lone voter's
// cluster has another server (relaxRaft), and empty at a newer epoch when
// this node missed a recovery (rejoin): readers go through r().
type raftParts struct {
	id      string // this node's Raft server id
	dataDir string
	state   raftState
	port    raftPort
	dial    nodeDialer
	epoch   epochCounter
	// announce gossips the epoch a rejoin took.
	announce func(epoch uint64)
	// logBroken hears that Raft's log takes no entry until it is
	// opened again (watchedLog).
	logBroken func(error)
	notify    chan<- bool
	log       *slog.Logger
	peerLog   *slog.Logger // Raft's own lines, which peers can cause

	raftStores
	cur atomic.Pointer[raft.Raft]

	mu     sync.Mutex // guards following, and the stores across a rejoin
	fsm    *store.FSM // the running Raft's: stopped before it shuts down
	trans  *raft.NetworkTransport
	stream *streamLayer // trans's
	adv    peerAddr
	fast   bool // a lone voter's timeouts
}

// raftPartsConfig is what this node's Raft works with. Every field is
// required but the loggers.
type raftPartsConfig struct {
	ID string
	// DataDir holds DATA/raft and DATA/epoch.
	DataDir string
	// Advertise is the host the others reach this node at; Port its
	// cluster port.
	Advertise string
	Port      int
	// Bootstrap makes a fresh node the single voter of a new cluster;
	// otherwise a fresh node waits for the leader to add it.
	Bootstrap bool
	State     raftState
	RaftPort  raftPort
	// Dial opens Raft's connections, with the Raft protocol of Epoch.
	Dial  nodeDialer
	Epoch epochCounter
	// AnnounceEpoch tells gossip the epoch a rejoin took. It is called
	// on a rejoin only, when gossip runs.
	AnnounceEpoch func(epoch uint64)
	Voter         voterStarter
	// LogBroken is told, once, that Raft's log takes no entry until it
	// is opened again (a write failed as its file filled up): the node
	// stops, and its next start opens the log anew.
	LogBroken func(error)
	// Notify is Raft's NotifyCh.
	Notify     chan<- bool
	Logger     *slog.Logger
	PeerLogger *slog.Logger
}

// raftState is the state file, Raft's state machine. Raft does not
// restore it from a snapshot at start (it is durable); a rejoin drops it.
type raftState interface {
	FSM() *store.FSM
	AppliedIndex() uint64
	Reset() error
}

// raftPort hands out the cluster port's Raft listener, and a new one
// once Raft's transport closed the old one (a restart).
type raftPort interface {
	Listener(proto string) net.Listener
	Renew(proto string) net.Listener
}

// epochCounter is this node's epoch (see epoch.go), which a rejoin
// raises.
type epochCounter interface {
	Load() uint64
	Store(uint64)
}

// voterStarter gives a node that its stored Raft configuration makes a
// voter its voter certificate, before Raft starts.
type voterStarter interface {
	startAsVoter()
}

var (
	_ raftState    = (*store.Store)(nil)
	_ raftPort     = (*port.Port)(nil)
	_ epochCounter = (*atomic.Uint64)(nil)
	_ voterStarter = (*voterCerts)(nil)
)

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

func (p *raftParts) raftConfig() *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(p.id)
	c.Logger = hclogFor(p.peerLog, "raft")
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
	c.NotifyCh = p.notify
	return c
}

// openRaft starts Raft; cfg.Bootstrap makes a fresh node the single voter
// of a new cluster, otherwise a fresh node waits for the leader to add it.
func openRaft(cfg raftPartsConfig) (*raftParts, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PeerLogger == nil {
		cfg.PeerLogger = cfg.Logger
	}
	p := &raftParts{id: cfg.ID, dataDir: cfg.DataDir, state: cfg.State, port: cfg.RaftPort, dial: cfg.Dial,
		epoch: cfg.Epoch, announce: cfg.AnnounceEpoch, logBroken: cfg.LogBroken, notify: cfg.Notify, log: cfg.Logger, peerLog: cfg.PeerLogger}
	stores, err := openRaftStores(cfg.DataDir, p.log)
	if err != nil {
		return nil, err
	}
	p.raftStores = *stores
	wal, snaps := p.wal, p.snaps
	adv, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(cfg.Advertise, fmt.Sprint(cfg.Port)))
	if err != nil {
		p.close()
		return nil, err
	}
	p.adv = peerAddr{id: cfg.ID, Addr: adv}
	if err := p.catchUpFSM(); err != nil {
		p.close()
		return nil, err
	}
	existing, err := raft.HasExistingState(wal, wal, snaps)
	if err != nil {
		p.close()
		return nil, err
	}
	p.newTransport(p.port.Listener(pki.ProtoRaft))
	stored := p.storedConfiguration(existing)
	// Alone, the node need not wait out a timeout meant for a lossy link
	// to elect itself; relaxRaft gives it those once another server joins.
	p.fast = singleVoter(stored, cfg.ID) || !existing && cfg.Bootstrap
	// Before Raft speaks: a voter of a previous release, or one that crashed
	// between a promotion and its new certificate, must not find its Raft
	// connections refused when it leads.
	if isVoterIn(stored, cfg.ID) || !existing && cfg.Bootstrap {
		cfg.Voter.startAsVoter()
	}
	conf := p.raftConfigFor(p.fast)
	if !existing && cfg.Bootstrap {
		c := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: p.trans.LocalAddr(), Suffrage: raft.Voter}}}
		if err := raft.BootstrapCluster(conf, wal, wal, snaps, p.trans, c); err != nil {
			p.close()
			return nil, fmt.Errorf("bootstrap raft: %w", err)
		}
	}
	r, err := p.newRaft(conf)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	p.cur.Store(r)
	return p, nil
}

func (p *raftParts) newRaft(conf *raft.Config) (*raft.Raft, error) {
	fsm := p.state.FSM()
	fsm.Stalled = p.applyStalled
	p.fsm = fsm
	logs := &watchedLog{WAL: p.wal, broken: p.logBroken}
	return raft.NewRaft(conf, fsm, logs, p.wal, p.snaps, p.trans)
}

// applyStalled hears from the state machine that the state file cannot
// take a log entry (err set), or took it at last (err nil). It runs on
// Raft's FSM goroutine and must not block.
//
// A leader that cannot apply answers no write and holds up the cluster's:
// it asks Raft to hand leadership to another voter, which Raft refuses
// when there is none or its loop is busy.
func (p *raftParts) applyStalled(index uint64, err error) {
	if err == nil {
		p.log.Info("state file: the log entry is written at last: applying again", "index", index)
		return
	}
	if errors.Is(err, unix.ENOSPC) {
		p.log.Error("disk full: the state file cannot take the next log entry: this node applies nothing until there is room, and tries again every few seconds: free some space under the data dir",
			"index", index, "data_dir", p.dataDir, "err", err)
	} else {
		p.log.Error("the state file cannot take the next log entry: this node applies nothing until it can, and tries again every few seconds",
			"index", index, "err", err)
	}
	if r := p.r(); r != nil && r.State() == raft.Leader {
		// Not waiting for the future: Raft's loop may be waiting for
		// this goroutine.
		r.LeadershipTransfer()
		p.log.Warn("asked Raft to hand leadership to another voter while the state file takes no entry")
	}
}

// newTransport makes p's transport over ln.
func (p *raftParts) newTransport(ln net.Listener) {
	p.stream = newStreamLayer(ln, p.adv, p.dialRaft)
	p.trans = newRaftTransport(p.stream, p.peerLog)
}

// dialRaft opens a Raft connection to another node, at this node's epoch.
func (p *raftParts) dialRaft(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return p.dial.dialNode(context.Background(), addr, pki.RaftProto(p.epoch.Load()), timeout)
}

// shutdown stops the running Raft: its inbound connections are closed
// first (see streamLayer), and its state machine stops trying an entry the
// state file cannot take (Raft's shutdown waits for it).
func (p *raftParts) shutdown() error {
	if p.stream != nil {
		p.stream.hangUp()
	}
	if p.fsm != nil {
		p.fsm.Stop()
	}
	return p.r().Shutdown().Error()
}

// raftConfigFor is the node's Raft configuration; fast for a lone voter.
func (p *raftParts) raftConfigFor(fast bool) *raft.Config {
	conf := p.raftConfig()
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
func (p *raftParts) relaxRaft() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.fast {
		return nil
	}
	p.log.Info("raft: a second server joined: restarting with the timeouts of a lossy link")
	if err := p.shutdown(); err != nil {
		return fmt.Errorf("stop raft: %w", err)
	}
	// Shutdown closed the transport and with it the port's Raft listener.
	p.newTransport(p.port.Renew(pki.ProtoRaft))
	r, err := p.newRaft(p.raftConfigFor(false))
	if err != nil {
		return fmt.Errorf("restart raft: %w", err)
	}
	p.cur.Store(r)
	p.fast = false
	return nil
}

// watchedLog is Raft's log, watched for the one failure raft-wal does not
// recover from while it is open: a segment that filled up as the file
// system did (out of inodes, a rotation that failed) stays sealed, and
// every later append fails with ErrSealed, until the log is opened again.
// Seen: a node whose log took no entry for minutes after the inodes were
// freed, until it was restarted, while status said nothing of it.
// broken is told of it once.
type watchedLog struct {
	*raftwal.WAL // and with it raft.MonotonicLogStore
	broken       func(error)
	once         sync.Once
}

func (w *watchedLog) StoreLog(l *raft.Log) error { return w.StoreLogs([]*raft.Log{l}) }

func (w *watchedLog) StoreLogs(logs []*raft.Log) error {
	err := w.WAL.StoreLogs(logs)
	if errors.Is(err, raftwal.ErrSealed) && w.broken != nil {
		w.once.Do(func() { w.broken(err) })
	}
	return err
}

// raftStores are Raft's stores in DATA/raft: the log (raft-wal, with its
// meta database) and the snapshots.
type raftStores struct {
	wal   *raftwal.WAL
	meta  *metadb.BoltMetaDB
	snaps raft.SnapshotStore
}

// openRaftStores opens DATA/raft.
func openRaftStores(dataDir string, log *slog.Logger) (*raftStores, error) {
	dir := filepath.Join(dataDir, "raft")
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
		return nil, err
	}
	// Small segments: raft-wal preallocates each one, and SD cards are small.
	// raft-wal's Close leaves its meta database open (and locked); we own
	// it so that a node can be stopped and started in one process.
	meta := &metadb.BoltMetaDB{}
	s := &raftStores{meta: meta}
	wal, err := raftwal.Open(filepath.Join(dir, "wal"), raftwal.WithSegmentSize(4<<20),
		raftwal.WithLogger(hclogFor(log, "raft-wal")), raftwal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("open raft log %s: %w", dir, err)
	}
	s.wal = wal
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclogFor(log, "snapshot"))
	if err != nil {
		s.close()
		return nil, fmt.Errorf("open raft snapshots %s: %w", dir, err)
	}
	s.snaps = snaps
	return s, nil
}

// storedConfiguration is the Raft configuration in this node's log and
// snapshots, read before Raft starts; empty for a node without Raft state.
func (p *raftParts) storedConfiguration(existing bool) raft.Configuration {
	if !existing {
		return raft.Configuration{}
	}
	// GetConfiguration reads the stores without starting Raft; it gets a
	// config of its own because it marks the one it is given.
	c, err := raft.GetConfiguration(p.raftConfig(), nopFSM{}, p.wal, p.wal, p.snaps, p.trans)
	if err != nil {
		p.log.Warn("read the stored Raft configuration", "err", err)
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
func (p *raftParts) catchUpFSM() error {
	list, err := p.snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	// Raft files a snapshot under its last entry, often a no-op or a
	// configuration the state file never counts: compare what it holds.
	if list[0].Index <= p.state.AppliedIndex() {
		return nil
	}
	_, rc, err := p.snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", list[0].ID, err)
	}
	held, err := store.SnapshotIndex(rc)
	rc.Close()
	if err != nil {
		return err
	}
	if held <= p.state.AppliedIndex() {
		return nil
	}
	if _, rc, err = p.snaps.Open(list[0].ID); err != nil {
		return fmt.Errorf("open snapshot %s: %w", list[0].ID, err)
	}
	p.log.Warn("state file is behind the raft snapshot: restoring", "applied", p.state.AppliedIndex(), "snapshot", held)
	return p.state.FSM().Restore(rc)
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
	errs = append(errs, p.raftStores.close())
	return errors.Join(errs...)
}

// close closes the log and its meta database.
func (s *raftStores) close() error {
	var errs []error
	if s.wal != nil {
		errs = append(errs, s.wal.Close())
	}
	if s.meta != nil {
		errs = append(errs, s.meta.Close())
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
// it, as logs holds them, is a command. Entries before the log's first
// are in a snapshot the state file holds: a follower that installed one
// has no log below it, and the state file's index is the last command's,
// which may be below the snapshot's.
func noCommandsIn(r *raft.Raft, logs raft.LogStore, from, to uint64) bool {
	if r.CommitIndex() < to {
		return false
	}
	if first, err := logs.FirstIndex(); err == nil && first > from {
		from = first
	}
	var l raft.Log
	for i := from; i <= to; i++ {
		if err := logs.GetLog(i, &l); err != nil || l.Type == raft.LogCommand {
			return false
		}
	}
	return true
}

// Package cluster owns the shoal daemon: it wires one node's parts — the
// state file (store), Raft, gossip membership (memberlist), the leader's
// scheduler loop, the node agent, the container runtime and the API server —
// and runs them until its context ends. node.go is the only place that wires
// parts together.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shoal-edge/shoal/cluster/agent"
	"github.com/shoal-edge/shoal/cluster/apiserver"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/cluster/port"
	"github.com/shoal-edge/shoal/internal/ratelog"
	"github.com/shoal-edge/shoal/runtime/image"
	"github.com/shoal-edge/shoal/runtime/linux"
	"github.com/shoal-edge/shoal/runtime/monitor"
	"github.com/shoal-edge/shoal/store"
)

// identity is written once at bootstrap or join and never changes: the node
// is its id, not its address.
type identity struct {
	Name string `json:"name"`
	ID   string `json:"id"`
}

// Node is one running shoal daemon.
type Node struct {
	cfg Config
	log *slog.Logger
	// peerLog is log with a bound on the lines peers and strangers can
	// cause, for memberlist and Raft (peerLogger).
	peerLog      *slog.Logger
	peerLogLimit *ratelog.Handler
	id           identity
	advertise    string
	lock         *os.File // DATA/lock, held while the node runs
	// first is the data dir's first start while New runs: undone if New
	// fails, committed (node.json written) if it succeeds.
	first *firstStart

	mat        *material
	cakey      *caKeeper // the CA's private key, on voters
	trust      *trust
	certs      *voterCerts
	caKeys     *caKeys
	port       *port.Port
	nodeClient *http.Client            // node protocol, to the leader
	internal   map[string]*http.Server // by protocol: join and node
	// bootstrapped: this run made a new cluster (and prints its token).
	bootstrapped bool
	// gossipSeeds are where to find the members when alone.
	gossipSeeds []string

	store     *store.Store
	raft      *raftParts
	writes    *writes
	reads     *reads
	backups   *backups
	apps      *appBackend
	fleet     *fleetBackend
	reports   *reports
	instances *instanceBackend
	members   *members
	gossip    *gossipUpkeep
	leader    *leader
	unplaced  *unplaced
	images    *image.Store
	rt        *linux.Runtime
	monitors  *monitor.Monitors
	ctrs      *nodeRuntime
	agent     *agent.Agent
	api       *apiserver.Server
	started   time.Time
	// leaderCh is raft's NotifyCh: buffered so raft never blocks on it.
	leaderCh chan bool

	epoch atomic.Uint64

	// stop ends Run from inside (a node out of its cluster); Run then
	// returns stopErr, set before stop closes.
	stop     chan struct{}
	stopOnce sync.Once
	stopErr  error
	// leaving: Leave is under way, and it ends the node itself.
	leaving atomic.Bool
}

// New opens the data dir and every part, without starting loops. On error
// everything opened so far is closed again.
func New(cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// Before the data dir is touched: a node that could not run a
	// container, or listen, must not make a cluster first.
	if err := checkRoot(); err != nil {
		return nil, err
	}
	if err := monitor.HasProgram(); err != nil {
		return nil, err
	}
	if dataDirInUse(cfg.DataDir) {
		return nil, fmt.Errorf("data dir %s is in use by another shoal node", cfg.DataDir)
	}
	// A data dir that left its cluster is refused below, after its
	// containers are stopped, whatever holds the ports now. No node holds
	// the dir (above), so nothing can make it leave in between.
	left := checkNotLeft(cfg.DataDir)
	if left == nil {
		if err := cfg.checkPorts(); err != nil {
			return nil, err
		}
	}
	before, absent, err := dataDirBefore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, started: time.Now(), leaderCh: make(chan bool, 16), stop: make(chan struct{})}
	n.peerLog, n.peerLogLimit = peerLogger(n.log)
	defer func() {
		if err == nil {
			return
		}
		if n.first == nil {
			n.Close()
			return
		}
		// A failed first start leaves the data dir as it was, removed
		// while the lock is still held.
		n.closeParts()
		if uerr := n.first.undo(n.lock); uerr != nil {
			err = errors.Join(err, uerr)
		}
		n.lock = nil
		n.peerLogLimit.Close()
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	// One node per data dir, from the first file it writes to the last
	// cleanup it does.
	if n.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if left != nil {
		n.stopLeftContainers(left)
		return nil, left
	}
	var fresh bool
	if n.id, fresh, err = loadIdentity(cfg.DataDir, cfg.Name); err != nil {
		return nil, err
	}
	if fresh {
		if n.first, err = beginFirstStart(cfg.DataDir, before, absent, n.log); err != nil {
			return nil, err
		}
	} else {
		dropStaleStarting(cfg.DataDir)
	}
	n.log = n.log.With("node", n.id.Name)
	if n.advertise, err = cfg.advertise(); err != nil {
		return nil, err
	}
	if err := n.loadOrMakeMaterial(fresh); err != nil {
		return nil, err
	}
	if n.cakey, err = newCAKeeper(cfg.DataDir, n.mat.ident.CA); err != nil {
		return nil, err
	}
	if n.store, err = store.Open(filepath.Join(cfg.DataDir, "state.db")); err != nil {
		return nil, err
	}
	if from, to := n.store.Schema(); from != 0 && from != to {
		n.log.Info("migrated the state file to this release's format", "path", n.store.Path(), "from", from, "to", to)
	}
	if n.images, err = image.New(image.Config{Root: filepath.Join(cfg.DataDir, "images"), Logger: n.log,
		MaxUnpacked: cfg.ImageMaxUnpacked, PullStall: cfg.ImagePullStall}); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	// Blobs and unpacked files no image refers to (an import or pull cut
	// short by a crash) go at start.
	if freed, err := n.images.GC(); err != nil {
		n.log.Warn("image garbage collection", "err", err)
	} else if freed > 0 {
		n.log.Info("image garbage collected", "bytes", freed)
	}
	if n.rt, err = linux.New(linux.Config{StateDir: filepath.Join(cfg.DataDir, "containers"), CgroupParent: n.cgroupParent(), Logger: n.log, OneOffPrefix: "run.", SpareIdle: cfg.SpareIdle}); err != nil {
		return nil, fmt.Errorf("container runtime: %w", err)
	}
	n.monitors, err = monitor.New(monitor.Config{
		StateDir:        filepath.Join(cfg.DataDir, "monitors"),
		RuntimeStateDir: filepath.Join(cfg.DataDir, "containers"),
		CgroupParent:    n.cgroupParent(),
		Logger:          n.log,
		Spare:           cfg.SpareMonitor,
	})
	if err != nil {
		return nil, fmt.Errorf("container monitors: %w", err)
	}
	// Containers outlive the daemon under their monitors: take over the
	// live ones, then remove whatever no live monitor owns (mounts,
	// cgroups, state dirs of containers that died with their monitor).
	n.ctrs = newNodeRuntime(nodeRuntimeConfig{Node: n.id.Name, DataDir: cfg.DataDir, AllowHostPaths: cfg.AllowHostPaths,
		PullTimeout: cfg.ImagePullTimeout, Logger: n.log}, n.images, n.rt, n.monitors)
	adopted := n.ctrs.adopt()
	if err := n.rt.Cleanup(n.monitors.Owns); err != nil {
		n.log.Warn("clean up containers of a previous run", "err", err)
	}
	epoch, err := readEpoch(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n.epoch.Store(epoch)
	opening := &openingRaft{}
	n.trust = newTrust(n.id, n.mat.ident, n.store, opening, &n.epoch, n.peerLog)
	n.certs = newVoterCerts(n.mat.ident, n.cakey, n.store, cfg.DataDir, n.log)
	bind := net.JoinHostPort(cfg.BindAddr, fmt.Sprint(cfg.Port))
	if n.port, err = port.Listen(port.Config{Addr: bind, TLS: n.mat.serverTLS(&n.epoch), Allow: n.trust.allow, Refuse: n.trust.refuse, Route: routeProto, Logger: n.log}); err != nil {
		return nil, fmt.Errorf("cluster port %s: %w", bind, err)
	}
	n.nodeClient = n.newNodeClient()
	pending, err := pendingBootstrap(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	// Gossip starts after Raft; it is there by the time a rejoin, on the
	// leader's loop under Run, announces an epoch.
	if n.raft, err = openRaft(raftPartsConfig{ID: n.id.ID, DataDir: cfg.DataDir, Advertise: n.advertise, Port: cfg.Port,
		Bootstrap: pending != nil, State: n.store, RaftPort: n.port, Dial: n, Epoch: &n.epoch,
		AnnounceEpoch: func(e uint64) { n.members.setEpoch(e) }, Voter: n.certs, Notify: n.leaderCh,
		LogBroken: func(err error) {
			n.log.Error("raft's log takes no entry until it is opened again (a write failed as its file system filled up): stopping; containers keep running, and the next shoal up opens the log anew", "err", err)
			n.stopWith(fmt.Errorf("raft's log in %s takes no entry until it is opened again (%w): a write failed as its file system filled up; free space and inodes there, and start shoal up again (containers kept running)",
				filepath.Join(cfg.DataDir, "raft"), err))
		},
		Logger: n.log, PeerLogger: n.peerLog}); err != nil {
		return nil, err
	}
	opening.open(n.raft)
	n.caKeys = newCAKeys(n.id, n.cakey, n.raft, n.store, n.certs, n, n.trust, n.log)
	n.writes = newWrites(n.id.ID, n.raft, n, n, n.trust)
	n.reads = newReads(n.id.ID, n.raft, n.store, n)
	if n.members, err = newMembers(membersConfig{Name: n.id.Name, ID: n.id.ID, BindAddr: cfg.BindAddr, GossipPort: cfg.GossipPort,
		Advertise: n.advertise, Port: cfg.Port, Epoch: n.epoch.Load(), Labels: cfg.Labels, SecretKey: n.mat.gossipKey, Logger: n.peerLog}); err != nil {
		return nil, err
	}
	relax, rejoinTo := make(chan struct{}, 1), make(chan uint64, 1)
	n.gossip = newGossipUpkeep(gossipUpkeepConfig{ID: n.id.ID, Advertise: n.advertise, Port: cfg.Port, GossipPort: cfg.GossipPort,
		Seeds: n.gossipSeeds, Members: n.members, Registry: n.store, Peers: n, Epoch: &n.epoch, Leaving: &n.leaving, Rejoin: rejoinTo, Logger: n.log})
	n.unplaced = newUnplaced(n.gossip, n.store)
	n.agent, err = agent.New(agent.Config{
		Node:    n.id.Name,
		LogDir:  filepath.Join(cfg.DataDir, "logs"),
		Desired: n.store,
		Runtime: n.ctrs,
		Logger:  n.log,
		Adopted: adopted,
		Journal: n.store,

		PullTimeout: cfg.ImagePullTimeout,
	})
	if err != nil {
		return nil, err
	}
	n.backups = newBackups(n.store, n.reads, n.writes, n.log)
	n.reports = newReports(n.id, n.raft, n.agent, n.gossip, n, n.trust, n.log)
	n.leader = newLeader(leaderConfig{
		Notify: n.leaderCh, Relax: relax, Rejoin: rejoinTo, HandOver: n, Restarter: n.raft,
		Raft: n.raft, State: n.store, Writes: n.writes, Members: n.gossip, MembersChanged: n.members.changed,
		Autopilot: newAutopilot(cfg.Voters, cfg.DeadVoterGrace, n.raft, n.store, n, relax),
		Records:   newClusterRecords(cfg.DataDir, n.store, n.writes, n.cakey, n.raft, n.log),
		Reports:   n.reports,
		Logger:    n.log,
	})
	n.apps = newAppBackend(n.writes, n.store, n.unplaced)
	n.fleet = newFleetBackend(fleetConfig{Self: n.id, Raft: n.raft, State: n.store, Live: n.gossip, Departures: n.members,
		Writes: n.writes, Leader: n, Voters: n.trust, Unplaced: n.unplaced, Stalls: n.store, DataDir: cfg.DataDir, Logger: n.log})
	n.instances = newInstanceBackend(instanceBackendConfig{Self: n.id, Advertise: n.advertise, CgroupParent: n.cgroupParent(),
		State: n.store, View: n.reports, Live: n.gossip, Unplaced: n.unplaced, Local: n.agent, Voters: n.trust, Peers: n, OneOff: n.ctrs})
	n.internal = n.internalServers()
	n.api, err = apiserver.New(apiserver.Config{
		Socket:     SocketPath(cfg.DataDir),
		Remote:     n.port.Listener(pki.ProtoAPI),
		Apps:       n.apps,
		Reads:      n.reads,
		Fleet:      n.fleet,
		Tokens:     n,
		Membership: n,
		Backups:    n.backups,
		Instances:  n.instances,
		Images:     newImageBackend(n.id.Name, n.images, n.store),
		Exec:       newExecBackend(n.id.Name, n.agent, n.store, n.ctrs),
		Logger:     n.log,
	})
	if err != nil {
		return nil, err
	}
	if n.first != nil {
		if err := n.first.commit(n.id); err != nil {
			return nil, err
		}
		n.first = nil
	}
	return n, nil
}

// loadIdentity reads DATA/node.json, or makes a new identity (fresh) that
// is written once the node has its certificate.
func loadIdentity(dir, name string) (id identity, fresh bool, err error) {
	path := filepath.Join(dir, "node.json")
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &id); err != nil || id.ID == "" || id.Name == "" {
			return id, false, fmt.Errorf("%s is damaged (%v): move the data dir away to start a new node", path, err)
		}
		if name != "" && name != id.Name {
			return id, false, fmt.Errorf("data dir %s belongs to node %q, not %q: drop --name or use another --data-dir", dir, id.Name, name)
		}
		return id, false, nil
	case !errors.Is(err, os.ErrNotExist):
		return id, false, err
	}
	if name == "" {
		name = DefaultConfig().Name
	}
	var b [16]byte
	rand.Read(b[:])
	return identity{Name: name, ID: hex.EncodeToString(b[:])}, true, nil
}

func writeIdentity(dir string, id identity) error {
	path := filepath.Join(dir, "node.json")
	data, _ := json.MarshalIndent(id, "", "  ")
	if err := writeFileAtomic(path, data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// loadOrMakeMaterial finds the node's certificate and keys, or gets them:
// by joining the cluster of cfg.Join, or by bootstrapping a new one. A
// failed join writes nothing.
func (n *Node) loadOrMakeMaterial(fresh bool) error {
	dir := n.cfg.DataDir
	mat, ok, err := loadMaterial(dir)
	if err != nil {
		return err
	}
	switch {
	case ok && fresh:
		return fmt.Errorf("%s holds a certificate but %s/node.json is missing: move the data dir away to start a new node", tlsDir(dir), dir)
	case ok && mat.ident.Node().ID != n.id.ID:
		return fmt.Errorf("%s belongs to node id %s, not this node's %s: move the data dir away to start a new node", tlsDir(dir), mat.ident.Node().ID, n.id.ID)
	case ok:
		if n.cfg.Join != "" {
			if err := checkJoinedCluster(dir, n.cfg.Join, mat); err != nil {
				return err
			}
			n.log.Info("the data dir already belongs to the token's cluster: starting as a restart, the token is not used")
		}
		if len(n.cfg.Labels) > 0 {
			n.log.Info("--label is ignored on a restart: the cluster keeps the labels it recorded at first start; change them with `shoal label`", "labels", n.cfg.Labels)
		}
	case n.cfg.Join != "":
		ctx, cancel := context.WithTimeout(context.Background(), 3*joinTimeout)
		defer cancel()
		if mat, n.gossipSeeds, err = joinCluster(ctx, dir, n.cfg.Join, n.id); err != nil {
			return err
		}
		n.log.Info("joined the cluster", "members", n.gossipSeeds)
	default:
		if mat, err = bootstrapMaterial(dir, n.id); err != nil {
			return err
		}
		n.bootstrapped = true
	}
	n.mat = mat
	return nil
}

// checkJoinedCluster refuses a join token for a data dir that belongs to
// another cluster: the node would run in its own cluster while its
// operator thinks it joined the token's. The token of the data dir's own
// cluster is a restart.
func checkJoinedCluster(dir, token string, mat *material) error {
	tok, err := pki.ParseToken(token)
	if err != nil {
		return fmt.Errorf("SHOAL_JOIN, --join or --join-file: %w", err)
	}
	if tok.CA == pki.FingerprintOf(mat.ident.CA) {
		return nil
	}
	return fmt.Errorf("data dir %s belongs to another cluster (%s) than the join token's: "+
		"to restart this node in its cluster, start it without SHOAL_JOIN, --join or --join-file; "+
		"to join the token's cluster, use an empty --data-dir (or move %s away)",
		dir, strings.TrimPrefix(mat.ident.CA.Subject.CommonName, "shoal "), dir)
}

// Run serves until ctx ends, then shuts every part down in order: the API
// stops taking requests, the agent stops containers, Raft and gossip stop.
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	run("api", n.api.Serve)
	run("cluster port", n.serveInternal)
	run("gossip", n.gossip.keepGossiping)
	run("report", n.reports.run)
	run("leadership", n.leader.run)
	run("ca key", n.caKeys.keepCAKey)
	run("agent", n.agent.Run)
	run("removal", n.watchRemoved)
	n.log.Info("node up", "id", n.id.ID, "advertise", n.advertise, "port", n.cfg.Port, "gossip_port", n.cfg.GossipPort, "socket", SocketPath(n.cfg.DataDir))
	var errs []error
	select {
	case <-ctx.Done():
	case <-n.stop:
		cancel()
		errs = append(errs, n.stopErr)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Bootstrapped says whether this run made a new cluster.
func (n *Node) Bootstrapped() bool { return n.bootstrapped }

// serveInternal answers the join and node protocols of the cluster port.
func (n *Node) serveInternal(ctx context.Context) error {
	errc := make(chan error, len(n.internal))
	for proto, srv := range n.internal {
		ln := n.port.Listener(proto)
		go func() { errc <- srv.Serve(ln) }()
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range n.internal {
		srv.Shutdown(sctx)
	}
	for range n.internal {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			return err
		}
	}
	return nil
}

// Close releases everything New opened. Safe after a failed New.
func (n *Node) Close() error {
	errs := []error{n.closeParts()}
	if n.lock != nil {
		errs = append(errs, n.lock.Close())
	}
	n.peerLogLimit.Close()
	return errors.Join(errs...)
}

// closeParts closes everything but the data dir's lock.
func (n *Node) closeParts() error {
	var errs []error
	if n.api != nil {
		errs = append(errs, n.api.Close())
	}
	for _, srv := range n.internal {
		errs = append(errs, srv.Close())
	}
	if n.members != nil {
		errs = append(errs, n.members.close())
	}
	if n.raft != nil {
		errs = append(errs, n.raft.close())
	}
	if n.port != nil {
		errs = append(errs, n.port.Close())
	}
	if n.nodeClient != nil {
		n.nodeClient.CloseIdleConnections()
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.ctrs != nil {
		n.ctrs.wait()
	}
	if n.monitors != nil {
		n.monitors.Close() // the spare monitor; monitors of containers stay
	}
	// The parent cgroup goes when no container is left in it; monitored
	// containers outlive the daemon and keep it.
	if n.rt != nil {
		if err := n.rt.Close(); err != nil {
			n.log.Debug("keep the containers' parent cgroup", "err", err)
		}
	}
	return errors.Join(errs...)
}

// lockDataDir takes DATA/lock for as long as the returned file is open.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another shoal node", dir)
		}
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	return f, nil
}

// WaitLeader blocks until the cluster has a leader, an id and its secrets
// on this node, or ctx ends.
func (n *Node) WaitLeader(ctx context.Context) error {
	for {
		id, _ := n.store.ClusterID()
		_, sec, _ := n.store.Secrets()
		if addr, _ := n.raft.r().LeaderWithID(); addr != "" && id != "" && sec {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stop:
			return errors.New("the node stopped")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// cgroupParent names the cgroup under which this node's containers live:
// by the node's id, so that two nodes on one host (tests, or a second data
// dir under the same host name) never clean up each other's containers.
func (n *Node) cgroupParent() string { return "shoal-" + n.id.ID[:12] }

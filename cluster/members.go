package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/pki"
)

// nodeMeta travels with gossip so that the leader can register a node
// without asking it.
type nodeMeta struct {
	ID   string `json:"id"`
	Arch string `json:"arch"`
	OS   string `json:"os"`
	Port int    `json:"port"` // the cluster port
	// Epoch counts the cluster's recoveries (see epoch.go).
	Epoch uint64 `json:"epoch,omitempty"`
	// Leaving is set by a node that stops on purpose, just before it
	// leaves gossip: memberlist tells the others of a leave and of a
	// death alike, and only this tells them apart (see departureOf).
	Leaving bool `json:"leaving,omitempty"`
	// Labels are the node's --label, for the leader to record when it
	// registers the node: the joining node cannot write to Raft itself.
	// Config.Validate keeps them within maxLabelBytes.
	Labels map[string]string `json:"labels,omitempty"`
}

// members is this node's gossip membership: it wraps memberlist and keeps
// what memberlist does not tell (how a member went, when our probes last
// had its ack).
//
// memberlist calls its delegates from its own goroutines; they never block
// on the node. Each join, leave, update and probe ack goes as an event
// over a channel to one loop, which alone changes the state below and
// nudges changed (room for one signal) for the leader's loop. Readers
// (list, departed) take mu.
type members struct {
	ml      *memberlist.Memberlist
	self    string // this node's member name: memberlist forgets its own node once it left
	changed chan struct{}
	events  chan memberEvent
	quit    chan struct{} // closed by close: the loop ends
	stop    sync.Once     // closes quit
	loop    sync.WaitGroup

	probeInterval time.Duration

	mu    sync.Mutex // guards following
	meta  nodeMeta
	gone  map[string]departure
	acked map[string]time.Time // member -> last direct ack of our probes (or its join)
}

// departure is how and when a member was last seen to go.
type departure struct {
	state api.NodeState // dead or left
	at    time.Time
}

// membersConfig is what gossip needs to know of its node.
type membersConfig struct {
	Name, ID   string
	BindAddr   string
	GossipPort int
	Advertise  string // the address the others reach this node at
	Port       int    // the cluster port, in this node's gossip
	Epoch      uint64
	Labels     map[string]string
	// SecretKey encrypts and authenticates gossip (the cluster's key).
	SecretKey []byte
	Logger    *slog.Logger // memberlist's; peers can cause its lines
	// ForgetGoneAfter is how long memberlist keeps a member that left or
	// died, this node's own once it left included (memberlist's
	// GossipToTheDeadTime); 0 is memberlist's default.
	ForgetGoneAfter time.Duration
}

// memberEvent is what memberlist told of a member, and when.
type memberEvent struct {
	kind memberEventKind
	name string
	meta []byte // a leave's last gossip
	at   time.Time
}

type memberEventKind int

const (
	memberJoined memberEventKind = iota
	memberGone                   // left or found dead
	memberUpdated
	memberAcked // answered one of our probes
)

// newMembers starts gossip on cfg's port; no member is contacted yet
// (join). close stops it.
func newMembers(cfg membersConfig) (*members, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &members{changed: make(chan struct{}, 1), events: make(chan memberEvent, 64), quit: make(chan struct{}),
		gone: map[string]departure{}, acked: map[string]time.Time{}}
	var err error
	m.meta = nodeMeta{ID: cfg.ID, Arch: goarch(), OS: runtime.GOOS, Port: cfg.Port, Epoch: cfg.Epoch, Labels: cfg.Labels}
	c := memberlist.DefaultLANConfig()
	c.Name = cfg.Name
	m.self = c.Name
	c.BindAddr = cfg.BindAddr
	c.BindPort = cfg.GossipPort
	c.AdvertiseAddr = cfg.Advertise
	c.AdvertisePort = cfg.GossipPort
	c.Delegate = m
	c.Events = m
	c.Ping = m
	m.probeInterval = c.ProbeInterval
	c.Logger = stdlogFor(cfg.Logger)
	// Gossip is encrypted and authenticated with the cluster's key: a
	// stranger can neither read it nor join it.
	c.SecretKey = cfg.SecretKey
	c.GossipVerifyIncoming, c.GossipVerifyOutgoing = true, true
	// A node is its key, not its address: once its old address is dead,
	// it may come back at a new one (DHCP, another network). Names are
	// unique among live nodes; the join refuses a taken one.
	c.DeadNodeReclaimTime = time.Second
	if cfg.ForgetGoneAfter > 0 {
		c.GossipToTheDeadTime = cfg.ForgetGoneAfter
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{c.BindAddr}, BindPort: c.BindPort, Logger: c.Logger})
	if err != nil {
		return nil, fmt.Errorf("gossip on %s:%d: %w", cfg.BindAddr, cfg.GossipPort, err)
	}
	c.Transport = &gossipTransport{NetTransport: nt}
	// The loop runs before memberlist does: memberlist's first event is
	// its own node's join.
	m.loop.Go(m.run)
	m.ml, err = memberlist.Create(c)
	if err != nil {
		nt.Shutdown()
		m.stop.Do(func() { close(m.quit) })
		m.loop.Wait()
		return nil, fmt.Errorf("gossip on %s:%d: %w", cfg.BindAddr, cfg.GossipPort, err)
	}
	return m, nil
}

// run applies memberlist's events to the members' state until close.
func (m *members) run() {
	for {
		select {
		case <-m.quit:
			return
		case e := <-m.events:
			if m.apply(e) {
				m.nudge()
			}
		}
	}
}

// apply records one event; it reports whether the leader should look
// again at the members.
func (m *members) apply(e memberEvent) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch e.kind {
	case memberJoined:
		delete(m.gone, e.name)
		m.acked[e.name] = e.at // not suspect before a probe could answer
	case memberGone:
		m.gone[e.name] = departure{state: departureOf(e.meta), at: e.at}
		delete(m.acked, e.name)
	case memberAcked:
		if _, ok := m.gone[e.name]; !ok {
			m.acked[e.name] = e.at
		}
		return false
	}
	return true
}

// notify hands an event to the loop; after close, events go nowhere.
func (m *members) notify(e memberEvent) {
	select {
	case m.events <- e:
	case <-m.quit:
	}
}

// gossipTransport is memberlist's network transport, except that packets
// memberlist sends once it has shut the transport down go nowhere,
// quietly. memberlist shuts its transport down before it stops its gossip
// timer, and a gossip round in between logged "[ERR] Failed to send gossip
// to ...: use of closed network connection" at many a clean stop.
type gossipTransport struct {
	*memberlist.NetTransport

	mu   sync.RWMutex // held for reading by sends under way
	down bool
}

func (t *gossipTransport) Shutdown() error {
	t.mu.Lock()
	t.down = true
	t.mu.Unlock()
	return t.NetTransport.Shutdown()
}

func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.down {
		return time.Now(), nil
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.down {
		return time.Now(), nil
	}
	return t.NetTransport.WriteToAddress(b, a)
}

func joinHostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// goarch names the architecture as placement.arch does: arm means v7.
func goarch() string { return runtime.GOARCH }

func (m *members) nudge() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// memberlist.Delegate
func (m *members) NodeMeta(limit int) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, _ := json.Marshal(m.meta)
	if len(b) > limit {
		// memberlist panics on more; the labels are the only part that
		// can grow, and they only matter at first registration.
		meta := m.meta
		meta.Labels = nil
		b, _ = json.Marshal(meta)
	}
	return b
}

// setEpoch tells the other members this node's new epoch.
func (m *members) setEpoch(e uint64) {
	m.mu.Lock()
	m.meta.Epoch = e
	m.mu.Unlock()
	m.ml.UpdateNode(time.Second)
}
func (m *members) NotifyMsg([]byte)                           {}
func (m *members) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (m *members) LocalState(join bool) []byte                { return nil }
func (m *members) MergeRemoteState(buf []byte, join bool)     {}

// memberlist.EventDelegate
func (m *members) NotifyJoin(n *memberlist.Node) {
	m.notify(memberEvent{kind: memberJoined, name: n.Name, at: time.Now()})
}

// NotifyLeave is called for a member that left and for one found dead
// alike; the Node's State field is not memberlist's view of it (that one
// is private), so the member's last gossip says which.
func (m *members) NotifyLeave(n *memberlist.Node) {
	m.notify(memberEvent{kind: memberGone, name: n.Name, meta: slices.Clone(n.Meta), at: time.Now()})
}

func (m *members) NotifyUpdate(n *memberlist.Node) {
	m.notify(memberEvent{kind: memberUpdated, name: n.Name, at: time.Now()})
}

// departureOf is how a member that memberlist no longer counts went:
// left when its last gossip announced it, dead otherwise.
func departureOf(meta []byte) api.NodeState {
	var nm nodeMeta
	if json.Unmarshal(meta, &nm) == nil && nm.Leaving {
		return api.NodeLeft
	}
	return api.NodeDead
}

// memberlist.PingDelegate: memberlist probes one member per probe
// interval, and reports each direct ack here.
func (m *members) AckPayload() []byte { return nil }

func (m *members) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	m.notify(memberEvent{kind: memberAcked, name: other.Name, at: time.Now()})
}

// departed says how and when a member that is no longer live went, as far
// as this node saw it.
func (m *members) departed(name string) (departure, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.gone[name]
	return d, ok
}

// member is one gossip member as the leader needs it.
type member struct {
	Name       string
	Addr       string // IP
	GossipAddr string // IP:gossip port
	GossipPort int
	State      api.NodeState // alive or suspect
	Meta       nodeMeta
}

// list is the live members: memberlist drops dead and left ones. A member
// is suspect when our probes have had no direct ack of it for longer
// than suspectAfter (see there); memberlist's own suspicion is private.
func (m *members) list() []member {
	all := m.ml.Members()
	self := m.self
	window := suspectAfter(len(all), m.probeInterval)
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []member
	for _, n := range all {
		mb := member{Name: n.Name, Addr: n.Addr.String(), GossipAddr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), GossipPort: int(n.Port), State: api.NodeAlive}
		json.Unmarshal(n.Meta, &mb.Meta)
		if at, ok := m.acked[n.Name]; n.Name != self && ok && now.Sub(at) > window {
			mb.State = api.NodeSuspect
		}
		out = append(out, mb)
	}
	return out
}

// suspectAfter is how long a member of a gossip of members nodes may go
// without a direct ack of our probes before it shows as suspect.
// memberlist probes one member per interval, in a list it shuffles after
// each round, so one member's probes are at most 2(members-1)-1 intervals
// apart; one interval more covers the ack's way back. A member whose
// probe failed thus turns suspect within about two rounds, before
// memberlist's suspicion timeout declares it dead in small fleets; in big
// ones (a round of probes outlasts the suspicion timeout) a member may go
// from alive to dead without showing suspect here, and one lost ack can
// show a live member suspect until the next probe.
func suspectAfter(members int, interval time.Duration) time.Duration {
	return time.Duration(2*max(members-1, 1)) * interval
}

// liveMembers are the gossip members, without revoked nodes: a node that
// left still holds the gossip key, but the cluster no longer knows it.
func (n *Node) liveMembers() []member {
	all := n.members.list()
	out := all[:0]
	for _, m := range all {
		if m.Meta.ID == "" || !n.store.Revoked(m.Meta.ID) {
			out = append(out, m)
		}
	}
	return out
}

// exchange joins each of addrs (gossip host:port) on its own: a full
// state exchange with the member there, at most maxExchanges at once. It
// returns the addresses that answered. An exchange tells each side what
// the other holds: a member that took this node for dead or left hears it
// is not, and this node learns every member the other knows.
func (m *members) exchange(addrs []string) []string {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		reached []string
		slot    = make(chan struct{}, maxExchanges)
	)
	for _, addr := range addrs {
		slot <- struct{}{}
		wg.Go(func() {
			defer func() { <-slot }()
			if _, err := m.ml.Join([]string{addr}); err != nil {
				return
			}
			mu.Lock()
			reached = append(reached, addr)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(reached)
	return reached
}

// maxExchanges bounds the state exchanges under way at once; a member
// that does not answer holds one for memberlist's TCP timeout (10 s).
const maxExchanges = 8

// close tells the others that this node stops on purpose (state "left":
// nobody waits out a suspicion timeout, and the node may come back at
// another address at once), then stops gossiping.
func (m *members) close() error {
	if m.ml == nil {
		return nil
	}
	m.leave(time.Second)
	err := m.ml.Shutdown()
	m.stop.Do(func() { close(m.quit) })
	m.loop.Wait()
	return err
}

// leave announces in this node's gossip that it is leaving, so that the
// others record it as left rather than dead, then leaves gossip. Each
// step waits up to timeout for its message to go out.
func (m *members) leave(timeout time.Duration) error {
	m.mu.Lock()
	again := m.meta.Leaving
	m.meta.Leaving = true
	m.mu.Unlock()
	if again {
		// Gossip was left: a new update would make this node alive again.
		return nil
	}
	var errs []error
	if err := m.ml.UpdateNode(timeout); err != nil {
		errs = append(errs, fmt.Errorf("announce the leave: %w", err)) // leave all the same
	}
	return errors.Join(append(errs, m.ml.Leave(timeout))...)
}

// keepGossiping exchanges state with every node of the registry that this
// node does not see in gossip, until it does, retrying from 1 s to
// maxGossipRetry apart.
//
// Gossip alone does not bring such a node back. memberlist exchanges full
// state only at a join and every 30 s with a member it already sees, and
// it tells a member that it is dead or left only by gossip sent to it
// while it is not yet either. So two nodes that restart at once and
// reach each other first (the others not yet reachable) each see the
// other alive and take themselves for joined, while the others hold both
// for left or dead and gossip to neither: with nothing missing on one
// side and the other side's gossip not reaching it, the fleet stays split
// (once for most of a minute, in a bigger fleet for good). The side that
// misses a node dials it; the exchange tells the node how it is held, it
// refutes, and both sides see each other again.
//
// The same loop rejoins a node that is alone (after a start, or a
// partition that outlived memberlist's memory of the others), and one the
// registry does not hold at its current address: a node back at a new
// address is refused by the others until its old address is dead, and
// only a fresh exchange tells them it is back. A lone bootstrap node has
// nobody to miss and costs nothing.
func (n *Node) keepGossiping(ctx context.Context) error {
	delay := time.Second
	for {
		if e, ok := n.newerEpoch(ctx); ok {
			select {
			case n.rejoinTo <- e:
			default:
			}
		}
		alone := n.members.ml.NumMembers() < 2
		var addrs []string
		switch {
		case n.leaving.Load():
			// Gossip was left: an exchange would bring this node back.
		case !n.registeredAsIs():
			addrs = n.seeds()
		default:
			addrs = n.missingPeers(maxExchanges)
			if alone {
				addrs = append(addrs, n.gossipSeeds...)
				slices.Sort(addrs)
				addrs = slices.Compact(addrs)
			}
		}
		if len(addrs) > 0 {
			reached := n.members.exchange(addrs)
			if len(reached) > 0 {
				n.log.Info("gossip: exchanged state with members", "reached", reached)
			} else {
				n.log.Debug("gossip: no member answered", "tried", addrs)
			}
			delay = min(2*delay, maxGossipRetry)
		} else {
			delay = time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}

// maxGossipRetry is the longest wait between two attempts to reach a node
// of the registry that gossip does not show.
const maxGossipRetry = 10 * time.Second

// missingPeers are the gossip addresses of at most limit nodes of the
// registry (chosen at random) that are not live members: one exchange
// with any live one brings every member it knows.
func (n *Node) missingPeers(limit int) []string {
	live := map[string]bool{}
	for _, m := range n.members.list() {
		live[m.Name] = true
	}
	recs, _ := n.store.Nodes()
	var out []string
	for _, r := range recs {
		if r.ID == n.id.ID || live[r.Name] || r.Address == "" || r.GossipPort == 0 || n.store.Revoked(r.ID) {
			continue
		}
		out = append(out, net.JoinHostPort(r.Address, strconv.Itoa(r.GossipPort)))
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:min(len(out), limit)]
}

// registeredAsIs says whether the registry holds this node at the address
// and ports it has now.
func (n *Node) registeredAsIs() bool {
	recs, _ := n.store.Nodes()
	for _, r := range recs {
		if r.ID == n.id.ID {
			return r.Address == n.advertise && r.GossipPort == n.cfg.GossipPort && r.Port == n.cfg.Port
		}
	}
	return false
}

// seeds are the gossip addresses to try: those the join answer gave, and
// every other node of the registry.
func (n *Node) seeds() []string {
	out := slices.Clone(n.gossipSeeds)
	recs, _ := n.store.Nodes()
	for _, r := range recs {
		if r.ID != n.id.ID && r.Address != "" && r.GossipPort != 0 {
			out = append(out, net.JoinHostPort(r.Address, strconv.Itoa(r.GossipPort)))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// A member's gossip says who it is (name, id, cluster port); anyone with
// the gossip key could say so, a node that left included. Before the
// leader registers a member or gives Raft its address, it dials that
// address and checks that the certificate there names the same node and is
// not revoked. Results are kept while the member's address and name stay;
// a failed check is tried again after memberRecheck.
const memberRecheck = 5 * time.Second

type memberCheck struct {
	addr, name string
	ok         bool
	at         time.Time
}

// verifiedMembers are the live members whose certificate backs their
// gossip; the leader's loop calls it. The members to check are checked at
// once, maxMemberChecks at a time, and the pass waits no longer than one
// check takes: anyone with the gossip key can announce members whose
// cluster port never answers, and one at a time they would hold the
// leader's loop (scheduling, autopilot) three seconds each. A member not
// checked within the pass is left out until a later pass checks it.
func (n *Node) verifiedMembers(ctx context.Context) []member {
	var out, unchecked []member
	for _, m := range n.liveMembers() {
		if m.Meta.ID == n.id.ID {
			out = append(out, m)
			continue
		}
		// A member of another epoch speaks no Raft with this node (a
		// newer one makes this node rejoin; an older one rejoins itself).
		if m.Meta.ID == "" || m.Meta.Port == 0 || m.Meta.Epoch != n.epoch.Load() {
			continue
		}
		addr := joinHostPort(m.Addr, m.Meta.Port)
		n.leaderMu.Lock()
		c, ok := n.checked[m.Meta.ID]
		n.leaderMu.Unlock()
		switch {
		case !ok || c.addr != addr || c.name != m.Name || (!c.ok && time.Since(c.at) > memberRecheck):
			unchecked = append(unchecked, m)
		case c.ok:
			out = append(out, m)
		}
	}
	if len(unchecked) == 0 {
		return out
	}
	pass, cancel := context.WithTimeout(ctx, memberCheckTimeout)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		slot = make(chan struct{}, maxMemberChecks)
	)
	for _, m := range unchecked {
		select {
		case slot <- struct{}{}:
		case <-pass.Done():
		}
		if pass.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-slot }()
			addr := joinHostPort(m.Addr, m.Meta.Port)
			c := memberCheck{addr: addr, name: m.Name, at: time.Now()}
			c.ok = n.checkMember(pass, m, addr) == nil
			if ctx.Err() != nil {
				return // the loop is ending: no verdict
			}
			n.leaderMu.Lock()
			n.checked[m.Meta.ID] = c
			n.leaderMu.Unlock()
			if c.ok {
				mu.Lock()
				out = append(out, m)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// maxMemberChecks bounds the members checked at once, memberCheckTimeout
// a check and a pass of them.
const (
	maxMemberChecks    = 32
	memberCheckTimeout = 3 * time.Second
)

// checkMember dials a member's cluster port and compares its certificate
// with its gossip.
func (n *Node) checkMember(ctx context.Context, m member, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, memberCheckTimeout)
	defer cancel()
	c, err := n.dialNode(ctx, raftAddr(m.Meta.ID, addr), pki.ProtoNode, memberCheckTimeout)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		n.peerLog.Warn("gossip member not confirmed by its certificate: ignored", "name", m.Name, "id", m.Meta.ID, "address", addr, "err", err)
		return err
	}
	defer c.Close()
	tc, ok := c.(*tls.Conn)
	if !ok || len(tc.ConnectionState().PeerCertificates) == 0 {
		return fmt.Errorf("no certificate")
	}
	if cn := tc.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != m.Name {
		err := fmt.Errorf("certificate names %q, gossip says %q", cn, m.Name)
		n.peerLog.Warn("gossip member not confirmed by its certificate: ignored", "name", m.Name, "id", m.Meta.ID, "address", addr, "err", err)
		return err
	}
	return nil
}

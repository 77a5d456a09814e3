package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
func (n *Node) liveMembers() []member { return withoutRevoked(n.members.list(), n.store) }

func withoutRevoked(all []member, revoked revocations) []member {
	out := all[:0]
	for _, m := range all {
		if m.Meta.ID == "" || !revoked.Revoked(m.Meta.ID) {
			out = append(out, m)
		}
	}
	return out
}

// count is how many members memberlist counts, this node included.
func (m *members) count() int { return m.ml.NumMembers() }

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

package cluster

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-edge/shoal/store"
)

// gossipUpkeep joins gossip with the node registry: it keeps this node in
// gossip with every registered node (keepGossiping), and tells which
// members count, alive and not revoked (liveMembers), and of those, whose
// certificate backs their gossip (verifiedMembers, for the leader).
//
// keepGossiping runs on its own goroutine, verifiedMembers on the
// leader's loop; mu guards the results of the certificate checks, which
// verifiedMembers runs at once.
type gossipUpkeep struct {
	self       string // this node's id
	advertise  string
	port       int
	gossipPort int
	seeds      []string // where to find the members when alone (the join answer's)
	members    gossipMembers
	registry   gossipRegistry
	peers      peerChecks
	epoch      interface{ Load() uint64 } // this node's epoch, which a rejoin raises
	leaving    interface{ Load() bool }   // gossip was left on purpose
	rejoinTo   chan<- uint64
	log        *slog.Logger

	mu      sync.Mutex             // guards following
	checked map[string]memberCheck // by node id: gossip confirmed by a certificate
}

// gossipUpkeepConfig is what the upkeep works with. Every field is
// required but Seeds and Logger.
type gossipUpkeepConfig struct {
	ID         string
	Advertise  string
	Port       int
	GossipPort int
	Seeds      []string
	Members    gossipMembers
	Registry   gossipRegistry
	Peers      peerChecks
	Epoch      interface{ Load() uint64 }
	Leaving    interface{ Load() bool }
	// Rejoin takes the newer epoch a confirmed member gossips (room for
	// one; the leader's loop drops this node's Raft state for it).
	Rejoin chan<- uint64
	Logger *slog.Logger
}

// gossipMembers is this node's gossip membership (members).
type gossipMembers interface {
	list() []member
	count() int
	exchange(addrs []string) []string
}

// gossipRegistry is the node registry of the replicated state.
type gossipRegistry interface {
	Nodes() ([]store.NodeRecord, error)
	Revoked(id string) bool
}

// peerChecks dial members: whether a member's certificate backs its
// gossip, and a confirmed member of a newer epoch than this node's.
type peerChecks interface {
	checkMember(ctx context.Context, m member, addr string) error
	newerEpoch(ctx context.Context) (uint64, bool)
}

var (
	_ gossipMembers  = (*members)(nil)
	_ gossipRegistry = (*store.Store)(nil)
	_ peerChecks     = (*Node)(nil)
)

func newGossipUpkeep(cfg gossipUpkeepConfig) *gossipUpkeep {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &gossipUpkeep{self: cfg.ID, advertise: cfg.Advertise, port: cfg.Port, gossipPort: cfg.GossipPort,
		seeds: slices.Clone(cfg.Seeds), members: cfg.Members, registry: cfg.Registry, peers: cfg.Peers,
		epoch: cfg.Epoch, leaving: cfg.Leaving, rejoinTo: cfg.Rejoin, log: cfg.Logger, checked: map[string]memberCheck{}}
}

// liveMembers are the gossip members, without revoked nodes: a node that
// left still holds the gossip key, but the cluster no longer knows it.
func (g *gossipUpkeep) liveMembers() []member { return withoutRevoked(g.members.list(), g.registry) }

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
func (g *gossipUpkeep) keepGossiping(ctx context.Context) error {
	delay := time.Second
	for {
		if e, ok := g.peers.newerEpoch(ctx); ok {
			select {
			case g.rejoinTo <- e:
			default:
			}
		}
		alone := g.members.count() < 2
		var addrs []string
		switch {
		case g.leaving.Load():
			// Gossip was left: an exchange would bring this node back.
		case !g.registeredAsIs():
			addrs = g.seedsAndRegistry()
		default:
			addrs = g.missingPeers(maxExchanges)
			if alone {
				addrs = append(addrs, g.seeds...)
				slices.Sort(addrs)
				addrs = slices.Compact(addrs)
			}
		}
		if len(addrs) > 0 {
			reached := g.members.exchange(addrs)
			if len(reached) > 0 {
				g.log.Info("gossip: exchanged state with members", "reached", reached)
			} else {
				g.log.Debug("gossip: no member answered", "tried", addrs)
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
func (g *gossipUpkeep) missingPeers(limit int) []string {
	live := map[string]bool{}
	for _, m := range g.members.list() {
		live[m.Name] = true
	}
	recs, _ := g.registry.Nodes()
	var out []string
	for _, r := range recs {
		if r.ID == g.self || live[r.Name] || r.Address == "" || r.GossipPort == 0 || g.registry.Revoked(r.ID) {
			continue
		}
		out = append(out, net.JoinHostPort(r.Address, strconv.Itoa(r.GossipPort)))
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:min(len(out), limit)]
}

// registeredAsIs says whether the registry holds this node at the address
// and ports it has now.
func (g *gossipUpkeep) registeredAsIs() bool {
	recs, _ := g.registry.Nodes()
	for _, r := range recs {
		if r.ID == g.self {
			return r.Address == g.advertise && r.GossipPort == g.gossipPort && r.Port == g.port
		}
	}
	return false
}

// seedsAndRegistry are the gossip addresses to try: those the join answer
// gave, and every other node of the registry.
func (g *gossipUpkeep) seedsAndRegistry() []string {
	out := slices.Clone(g.seeds)
	recs, _ := g.registry.Nodes()
	for _, r := range recs {
		if r.ID != g.self && r.Address != "" && r.GossipPort != 0 {
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
func (g *gossipUpkeep) verifiedMembers(ctx context.Context) []member {
	var out, unchecked []member
	for _, m := range g.liveMembers() {
		if m.Meta.ID == g.self {
			out = append(out, m)
			continue
		}
		// A member of another epoch speaks no Raft with this node (a
		// newer one makes this node rejoin; an older one rejoins itself).
		if m.Meta.ID == "" || m.Meta.Port == 0 || m.Meta.Epoch != g.epoch.Load() {
			continue
		}
		addr := joinHostPort(m.Addr, m.Meta.Port)
		g.mu.Lock()
		c, ok := g.checked[m.Meta.ID]
		g.mu.Unlock()
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
			c.ok = g.peers.checkMember(pass, m, addr) == nil
			if ctx.Err() != nil {
				return // the loop is ending: no verdict
			}
			g.mu.Lock()
			g.checked[m.Meta.ID] = c
			g.mu.Unlock()
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

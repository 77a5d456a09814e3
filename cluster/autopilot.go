package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/store"
)

// Autopilot runs on the leader, after every membership change and on a
// tick. It keeps Raft's configuration in step with gossip:
//
//   - every live member is a Raft server: a voter while the cluster has
//     fewer than Config.Voters, a non-voter (a full replica) otherwise;
//   - voters stay odd: a second node waits as a non-voter for a third, so
//     that two voters never need each other for every write;
//   - a voter gone from gossip, and not answering on its cluster port,
//     for longer than Config.DeadVoterGrace is replaced: a live non-voter is promoted first, then the dead voter
//     is removed, so the voters never drop below a majority of live ones;
//   - a server whose address changed (DHCP, another network) is re-added
//     under the same id with its new address: identity is the node's key.

// apPlan is what one autopilot pass does, decided by planAutopilot alone.
type apPlan struct {
	addVoters    []raft.Server // new servers, or address changes, or promotions
	addNonvoters []raft.Server
	remove       []raft.ServerID
}

// apMember is a live gossip member as autopilot needs it.
type apMember struct {
	ID   raft.ServerID
	Addr raft.ServerAddress
}

// planAutopilot decides a pass: servers is Raft's configuration, live the
// members gossip reports alive (the leader included), deadFor how long each
// server missing from live has been missing.
//
// Revoked servers (their node left or was forgotten, or a new node took its
// name) go: a non-voter at once, a voter as a dead one past its grace, or
// without a replacement as long as the other voters keep a live majority.
func planAutopilot(servers []raft.Server, live []apMember, deadFor map[raft.ServerID]time.Duration, revoked map[raft.ServerID]bool, target int, grace time.Duration) apPlan {
	var p apPlan
	inConf := map[raft.ServerID]raft.Server{}
	isLive := map[raft.ServerID]raft.ServerAddress{}
	for _, m := range live {
		isLive[m.ID] = m.Addr
	}
	voters, liveVoters := 0, 0
	var liveNonvoters []raft.Server
	for _, s := range servers {
		inConf[s.ID] = s
		_, alive := isLive[s.ID]
		switch {
		case s.Suffrage == raft.Voter:
			voters++
			if alive {
				liveVoters++
			}
		case revoked[s.ID]:
			p.remove = append(p.remove, s.ID)
		case alive:
			liveNonvoters = append(liveNonvoters, s)
		}
	}
	// Address changes first: a server others cannot reach is no server.
	for _, m := range live {
		s, ok := inConf[m.ID]
		if !ok || s.Address == m.Addr {
			continue
		}
		s.Address = m.Addr
		if s.Suffrage == raft.Voter {
			p.addVoters = append(p.addVoters, s)
		} else {
			p.addNonvoters = append(p.addNonvoters, s)
		}
	}
	var newcomers []raft.Server
	for _, m := range live {
		if _, ok := inConf[m.ID]; !ok {
			newcomers = append(newcomers, raft.Server{ID: m.ID, Address: m.Addr, Suffrage: raft.Nonvoter})
		}
	}
	// Dead voters past the grace: replace one for one with live
	// non-voters (promote, then remove).
	candidates := append(liveNonvoters, newcomers...)
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		if _, alive := isLive[s.ID]; alive || (deadFor[s.ID] < grace && !revoked[s.ID]) {
			continue
		}
		if len(candidates) == 0 {
			if revoked[s.ID] && voters > 1 && liveVoters >= (voters-1)/2+1 {
				p.remove = append(p.remove, s.ID)
				voters--
			}
			continue
		}
		c := candidates[0]
		candidates = candidates[1:]
		c.Suffrage = raft.Voter
		p.addVoters = append(p.addVoters, c)
		p.remove = append(p.remove, s.ID)
	}
	// Grow towards the target so that the count ends odd: two at a time,
	// or one from an even count.
	for voters < target {
		step := 1 + voters%2
		if len(candidates) < step || voters+step > target {
			break
		}
		for _, c := range candidates[:step] {
			c.Suffrage = raft.Voter
			p.addVoters = append(p.addVoters, c)
		}
		candidates = candidates[step:]
		voters += step
	}
	for _, c := range candidates {
		if c.Suffrage == raft.Nonvoter {
			if _, ok := inConf[c.ID]; !ok {
				p.addNonvoters = append(p.addNonvoters, c)
			}
		}
	}
	return p
}

// autopilot applies planAutopilot's passes on the leader. Only the
// leader's loop calls it, one pass at a time; mu guards serverGone all
// the same, for the checks and a test.
type autopilot struct {
	raft    autopilotRaft
	revoked revocations
	dial    nodeDialer
	relax   chan<- struct{}
	voters  int           // Config.Voters
	grace   time.Duration // Config.DeadVoterGrace

	mu         sync.Mutex                  // guards following
	serverGone map[raft.ServerID]time.Time // Raft servers missing from gossip, since (this term)
}

// autopilotRaft is the running Raft, and whether it still runs a lone
// voter's timeouts.
type autopilotRaft interface {
	runningRaft
	isFast() bool
}

// revocations says whether a node id was revoked (left, forgotten, or its
// name taken by a new node).
type revocations interface {
	Revoked(id string) bool
}

// nodeDialer opens a connection to the node of a Raft address, checked by
// its certificate.
type nodeDialer interface {
	dialNode(ctx context.Context, addr raft.ServerAddress, proto string, timeout time.Duration) (net.Conn, error)
}

var (
	_ autopilotRaft = (*raftParts)(nil)
	_ revocations   = (*store.Store)(nil)
	_ nodeDialer    = (*Node)(nil)
)

// newAutopilot keeps voters voters, replacing dead ones after grace; a
// send on relax (room for one) asks for Raft's restart with a cluster's
// timeouts once there is more than one voter.
func newAutopilot(voters int, grace time.Duration, r autopilotRaft, revoked revocations, dial nodeDialer, relax chan<- struct{}) *autopilot {
	return &autopilot{raft: r, revoked: revoked, dial: dial, relax: relax, voters: voters, grace: grace,
		serverGone: map[raft.ServerID]time.Time{}}
}

// newTerm forgets the absences an earlier term timed: a server gone
// briefly now must not count an old absence.
func (a *autopilot) newTerm() {
	a.mu.Lock()
	clear(a.serverGone)
	a.mu.Unlock()
}

// pass applies one pass on the leader.
func (a *autopilot) pass(ctx context.Context, log *slog.Logger, members []member) error {
	r := a.raft.r()
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	servers := f.Configuration().Servers
	var live []apMember
	present := map[raft.ServerID]bool{}
	for _, m := range members {
		if m.Meta.ID == "" || m.Meta.Port == 0 {
			continue
		}
		id := raft.ServerID(m.Meta.ID)
		present[id] = true
		live = append(live, apMember{ID: id, Addr: raftAddr(m.Meta.ID, net.JoinHostPort(m.Addr, strconv.Itoa(m.Meta.Port)))})
	}
	for _, m := range a.answeringVoters(ctx, servers, present) {
		present[m.ID] = true
		live = append(live, m)
	}
	now := time.Now()
	deadFor := map[raft.ServerID]time.Duration{}
	a.mu.Lock()
	inConf := map[raft.ServerID]bool{}
	for _, s := range servers {
		inConf[s.ID] = true
	}
	for id := range a.serverGone {
		if !inConf[id] {
			delete(a.serverGone, id)
		}
	}
	for _, s := range servers {
		if present[s.ID] {
			delete(a.serverGone, s.ID)
			continue
		}
		if _, ok := a.serverGone[s.ID]; !ok {
			a.serverGone[s.ID] = now
		}
		deadFor[s.ID] = now.Sub(a.serverGone[s.ID])
	}
	a.mu.Unlock()

	revoked := map[raft.ServerID]bool{}
	for _, s := range servers {
		if a.revoked.Revoked(string(s.ID)) {
			revoked[s.ID] = true
		}
	}
	p := planAutopilot(servers, live, deadFor, revoked, a.voters, a.grace)
	// Changes wait for one another: Raft takes one configuration change
	// at a time.
	for _, s := range p.addVoters {
		log.Info("autopilot: voter", "id", s.ID, "address", s.Address)
		if err := r.AddVoter(s.ID, s.Address, 0, 10*time.Second).Error(); err != nil {
			return fmt.Errorf("add voter %s: %w", s.ID, err)
		}
	}
	for _, s := range p.addNonvoters {
		log.Info("autopilot: non-voter", "id", s.ID, "address", s.Address)
		if err := r.AddNonvoter(s.ID, s.Address, 0, 10*time.Second).Error(); err != nil {
			return fmt.Errorf("add non-voter %s: %w", s.ID, err)
		}
	}
	for _, id := range p.remove {
		log.Warn("autopilot: removing a dead voter", "id", id, "gone_for", deadFor[id].Round(time.Second))
		if err := r.RemoveServer(id, 0, 10*time.Second).Error(); err != nil {
			return fmt.Errorf("remove voter %s: %w", id, err)
		}
	}
	voters := map[raft.ServerID]bool{}
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters[s.ID] = true
		}
	}
	for _, s := range p.addVoters {
		voters[s.ID] = true
	}
	for _, id := range p.remove {
		delete(voters, id)
	}
	a.tuneTimeouts(len(voters) > 1)
	return nil
}

// answeringVoters are the voters of servers missing from gossip (not in
// present) and not revoked that answer on their cluster port, in the
// order of servers.
//
// Gossip is spoken by every holder of the gossip key, a stolen non-voter
// included, and one forged message can make a member look dead for good:
// a voter missing from it is asked directly before it counts as gone, or
// the forger would be promoted in its place. The voters are asked at
// once, maxVoterChecks at a time, so that a pass of the leader's loop
// waits about one check (voterCheckTimeout) for voters that do not
// answer, not one check each; every voter is asked, since one not asked
// would count as gone.
func (a *autopilot) answeringVoters(ctx context.Context, servers []raft.Server, present map[raft.ServerID]bool) []apMember {
	var missing []raft.Server
	for _, s := range servers {
		if s.Suffrage != raft.Voter || present[s.ID] || a.revoked.Revoked(string(s.ID)) {
			continue
		}
		missing = append(missing, s)
	}
	answered := make([]bool, len(missing))
	var (
		wg   sync.WaitGroup
		slot = make(chan struct{}, maxVoterChecks)
	)
	for i, s := range missing {
		slot <- struct{}{} // a check ends within voterCheckTimeout
		wg.Go(func() {
			defer func() { <-slot }()
			answered[i] = a.answers(ctx, s.Address)
		})
	}
	wg.Wait()
	var out []apMember
	for i, s := range missing {
		if answered[i] {
			out = append(out, apMember{ID: s.ID, Addr: s.Address})
		}
	}
	return out
}

// maxVoterChecks bounds the voters asked at once, voterCheckTimeout one
// check: a pass waits at most voterCheckTimeout for each maxVoterChecks
// voters missing from gossip.
const (
	maxVoterChecks    = 8
	voterCheckTimeout = 2 * time.Second
)

// tuneTimeouts asks for Raft's restart with the timeouts of a lossy link
// (relaxRaft) once a lone voter's configuration has another voter: the
// leader lease only counts voters, so non-voters alone change nothing.
func (a *autopilot) tuneTimeouts(several bool) {
	if !several || !a.raft.isFast() {
		return
	}
	select {
	case a.relax <- struct{}{}:
	default:
	}
}

// answers says whether the node of Raft address addr completes a handshake
// on its cluster port with the certificate of the id it was registered
// under.
func (a *autopilot) answers(ctx context.Context, addr raft.ServerAddress) bool {
	ctx, cancel := context.WithTimeout(ctx, voterCheckTimeout)
	defer cancel()
	c, err := a.dial.dialNode(ctx, addr, pki.ProtoNode, voterCheckTimeout)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

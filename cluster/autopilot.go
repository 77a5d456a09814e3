package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/cluster/pki"
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

// autopilot applies one pass on the leader.
func (n *Node) autopilot(ctx context.Context, log *slog.Logger, members []member) error {
	r := n.raft.r()
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
	// Gossip is spoken by every holder of the gossip key, a stolen
	// non-voter included, and one forged message can make a member look
	// dead for good: a voter missing from it is asked directly before it
	// counts as gone, or the forger would be promoted in its place.
	for _, s := range servers {
		if s.Suffrage != raft.Voter || present[s.ID] || n.store.Revoked(string(s.ID)) || !n.answers(ctx, s.Address) {
			continue
		}
		present[s.ID] = true
		live = append(live, apMember{ID: s.ID, Addr: s.Address})
	}
	now := time.Now()
	deadFor := map[raft.ServerID]time.Duration{}
	n.leaderMu.Lock()
	inConf := map[raft.ServerID]bool{}
	for _, s := range servers {
		inConf[s.ID] = true
	}
	for id := range n.serverGone {
		if !inConf[id] {
			delete(n.serverGone, id)
		}
	}
	for _, s := range servers {
		if present[s.ID] {
			delete(n.serverGone, s.ID)
			continue
		}
		if _, ok := n.serverGone[s.ID]; !ok {
			n.serverGone[s.ID] = now
		}
		deadFor[s.ID] = now.Sub(n.serverGone[s.ID])
	}
	n.leaderMu.Unlock()

	revoked := map[raft.ServerID]bool{}
	for _, s := range servers {
		if n.store.Revoked(string(s.ID)) {
			revoked[s.ID] = true
		}
	}
	p := planAutopilot(servers, live, deadFor, revoked, n.cfg.Voters, n.cfg.DeadVoterGrace)
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
	n.tuneTimeouts(len(voters) > 1)
	return nil
}

// tuneTimeouts asks for Raft's restart with the timeouts of a lossy link
// (relaxRaft) once a lone voter's configuration has another voter: the
// leader lease only counts voters, so non-voters alone change nothing.
func (n *Node) tuneTimeouts(several bool) {
	if !several || !n.raft.isFast() {
		return
	}
	select {
	case n.relax <- struct{}{}:
	default:
	}
}

// answers says whether the node of Raft address addr completes a handshake
// on its cluster port with the certificate of the id it was registered
// under.
func (n *Node) answers(ctx context.Context, addr raft.ServerAddress) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := n.dialNode(ctx, addr, pki.ProtoNode, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

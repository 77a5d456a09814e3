package cluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/internal/testutil"
)

func voter(id string) raft.Server {
	return raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":1"), Suffrage: raft.Voter}
}

func nonvoter(id string) raft.Server {
	s := voter(id)
	s.Suffrage = raft.Nonvoter
	return s
}

func alive(ids ...string) []apMember {
	var out []apMember
	for _, id := range ids {
		out = append(out, apMember{ID: raft.ServerID(id), Addr: raft.ServerAddress(id + ":1")})
	}
	return out
}

func ids(ss []raft.Server) []string {
	var out []string
	for _, s := range ss {
		out = append(out, string(s.ID))
	}
	slices.Sort(out)
	return out
}

func TestPlanAutopilot(t *testing.T) {
	grace := 30 * time.Second
	cases := []struct {
		name                string
		servers             []raft.Server
		live                []apMember
		deadFor             map[raft.ServerID]time.Duration
		revoked             map[raft.ServerID]bool
		target              int
		voters, nonv, remov []string
	}{
		{name: "second node waits as a non-voter", servers: []raft.Server{voter("a")}, live: alive("a", "b"), target: 3, nonv: []string{"b"}},
		{name: "third node makes three voters", servers: []raft.Server{voter("a"), nonvoter("b")}, live: alive("a", "b", "c"), target: 3, voters: []string{"b", "c"}},
		{name: "two newcomers at once", servers: []raft.Server{voter("a")}, live: alive("a", "b", "c"), target: 3, voters: []string{"b", "c"}},
		{name: "beyond the target: non-voters", servers: []raft.Server{voter("a"), voter("b"), voter("c")}, live: alive("a", "b", "c", "d", "e"), target: 3, nonv: []string{"d", "e"}},
		{name: "target five", servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("d")}, live: alive("a", "b", "c", "d", "e"), target: 5, voters: []string{"d", "e"}},
		{name: "even count is mended", servers: []raft.Server{voter("a"), voter("b"), nonvoter("c")}, live: alive("a", "b", "c"), target: 3, voters: []string{"c"}},
		{name: "dead voter within grace stays", servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("d")}, live: alive("a", "b", "d"),
			deadFor: map[raft.ServerID]time.Duration{"c": 10 * time.Second}, target: 3},
		{name: "dead voter past grace is replaced", servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("d")}, live: alive("a", "b", "d"),
			deadFor: map[raft.ServerID]time.Duration{"c": time.Minute}, target: 3, voters: []string{"d"}, remov: []string{"c"}},
		{name: "dead voter without a replacement stays", servers: []raft.Server{voter("a"), voter("b"), voter("c")}, live: alive("a", "b"),
			deadFor: map[raft.ServerID]time.Duration{"c": time.Minute}, target: 3},
		{name: "revoked non-voter goes", servers: []raft.Server{voter("a"), nonvoter("b")}, live: alive("a"),
			revoked: map[raft.ServerID]bool{"b": true}, target: 3, remov: []string{"b"}},
		{name: "revoked voter is replaced at once", servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("d")}, live: alive("a", "b", "d"),
			revoked: map[raft.ServerID]bool{"c": true}, target: 3, voters: []string{"d"}, remov: []string{"c"}},
		{name: "revoked voter without replacement goes while a majority lives", servers: []raft.Server{voter("a"), voter("b"), voter("c")}, live: alive("a", "b"),
			revoked: map[raft.ServerID]bool{"c": true}, target: 3, remov: []string{"c"}},
		{name: "revoked voter stays when the rest has no majority", servers: []raft.Server{voter("a"), voter("b"), voter("c")}, live: alive("a"),
			revoked: map[raft.ServerID]bool{"c": true}, target: 3},
		{name: "address change keeps suffrage", servers: []raft.Server{voter("a"), nonvoter("b")},
			live: []apMember{{ID: "a", Addr: "a:1"}, {ID: "b", Addr: "b:2"}}, target: 3, nonv: []string{"b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := planAutopilot(tc.servers, tc.live, tc.deadFor, tc.revoked, tc.target, grace)
			var rm []string
			for _, id := range p.remove {
				rm = append(rm, string(id))
			}
			if !slices.Equal(ids(p.addVoters), tc.voters) || !slices.Equal(ids(p.addNonvoters), tc.nonv) || !slices.Equal(rm, tc.remov) {
				t.Fatalf("plan: voters %v non-voters %v remove %v; want %v %v %v", ids(p.addVoters), ids(p.addNonvoters), rm, tc.voters, tc.nonv, tc.remov)
			}
		})
	}
}

// lonelyRaft is a Raft never restarted, with a lone voter's timeouts.
type lonelyRaft struct{ fixedRaft }

func (lonelyRaft) isFast() bool { return true }

// revokedIDs are the ids the test revoked.
type revokedIDs map[string]bool

func (r revokedIDs) Revoked(id string) bool { return r[id] }

// answering dials the addresses it was told answer, and holds a dial of
// any other until its context ends, as a node whose port takes the
// connection but never completes a handshake. It counts dials under way.
type answering struct {
	mu      sync.Mutex
	ok      map[raft.ServerAddress]bool
	now     int // dials under way
	most    int
	dialled []raft.ServerAddress
}

func (d *answering) answer(addr raft.ServerAddress, yes bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ok[addr] = yes
}

func (d *answering) dialNode(ctx context.Context, addr raft.ServerAddress, _ string, _ time.Duration) (net.Conn, error) {
	d.mu.Lock()
	d.dialled = append(d.dialled, addr)
	ok := d.ok[addr]
	d.now++
	d.most = max(d.most, d.now)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.now--
		d.mu.Unlock()
	}()
	if ok {
		c, s := net.Pipe()
		s.Close()
		return c, nil
	}
	<-ctx.Done()
	return nil, &dialError{ctx.Err()}
}

func raftMember(s *raftOnStream, id string) member {
	_, hp := splitRaftAddr(s.trans.LocalAddr())
	host, port, _ := net.SplitHostPort(hp)
	p, _ := strconv.Atoi(port)
	return member{Name: id, Addr: host, Meta: nodeMeta{ID: id, Port: p}}
}

func suffragesOf(t *testing.T, r *raft.Raft) (voters, nonvoters []string) {
	t.Helper()
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
		} else {
			nonvoters = append(nonvoters, string(s.ID))
		}
	}
	slices.Sort(voters)
	slices.Sort(nonvoters)
	return voters, nonvoters
}

// Autopilot alone, on real Rafts over loopback: a second member waits as
// a non-voter, a third makes three voters and asks for Raft's restart
// with a cluster's timeouts; a voter missing from gossip that answers on
// its port is not timed as gone, one that does not answer is, and a new
// term forgets it; a revoked voter is not even asked.
func TestAutopilotAlone(t *testing.T) {
	a := startRaftOnStream(t, "a")
	b := startRaftOnStream(t, "b")
	c := startRaftOnStream(t, "c")
	testutil.WaitFor(t, 10*time.Second, func() error {
		if a.r.State() != raft.Leader {
			return fmt.Errorf("a is %s", a.r.State())
		}
		return nil
	})
	dial := &answering{ok: map[raft.ServerAddress]bool{}}
	revoked := revokedIDs{}
	relax := make(chan struct{}, 1)
	ap := newAutopilot(3, time.Hour, lonelyRaft{fixedRaft{a.r}}, revoked, dial, relax)
	ctx := context.Background()
	log := testutil.Logger(t)
	ma, mb, mc := raftMember(a, "a"), raftMember(b, "b"), raftMember(c, "c")

	if err := ap.pass(ctx, log, []member{ma, mb}); err != nil {
		t.Fatal(err)
	}
	if v, nv := suffragesOf(t, a.r); !slices.Equal(v, []string{"a"}) || !slices.Equal(nv, []string{"b"}) {
		t.Fatalf("two members: voters %v non-voters %v, want [a] [b]", v, nv)
	}
	if len(relax) != 0 {
		t.Error("a lone voter asked for a cluster's timeouts")
	}
	if err := ap.pass(ctx, log, []member{ma, mb, mc}); err != nil {
		t.Fatal(err)
	}
	if v, nv := suffragesOf(t, a.r); !slices.Equal(v, []string{"a", "b", "c"}) || len(nv) != 0 {
		t.Fatalf("three members: voters %v non-voters %v, want [a b c] []", v, nv)
	}
	if len(relax) != 1 {
		t.Error("three voters did not ask for a cluster's timeouts")
	}

	gone := func(id raft.ServerID) bool {
		ap.mu.Lock()
		defer ap.mu.Unlock()
		_, ok := ap.serverGone[id]
		return ok
	}
	dial.answer(c.trans.LocalAddr(), true)
	if err := ap.pass(ctx, log, []member{ma, mb}); err != nil {
		t.Fatal(err)
	}
	if gone("c") {
		t.Error("c answers on its port but is timed as gone")
	}
	dial.answer(c.trans.LocalAddr(), false)
	if err := ap.pass(ctx, log, []member{ma, mb}); err != nil {
		t.Fatal(err)
	}
	if !gone("c") {
		t.Error("c answers neither gossip nor on its port but is not timed as gone")
	}
	ap.newTerm()
	if gone("c") {
		t.Error("a new term kept the old term's absence of c")
	}
	revoked["c"] = true
	dial.dialled = nil
	if err := ap.pass(ctx, log, []member{ma, mb}); err != nil {
		t.Fatal(err)
	}
	if len(dial.dialled) != 0 {
		t.Errorf("a pass asked %v: a revoked voter is not asked", dial.dialled)
	}
}

// Voters missing from gossip are asked at once, at most maxVoterChecks at
// a time: a pass waits one check for each maxVoterChecks voters that do
// not answer, not one check each, and still counts every voter that
// answers. In synctest's fake time.
func TestAutopilotAsksMissingVotersAtOnce(t *testing.T) {
	for _, missing := range []int{3, 2*maxVoterChecks + 1} {
		t.Run(strconv.Itoa(missing), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dial := &answering{ok: map[raft.ServerAddress]bool{}}
				ap := newAutopilot(3, time.Hour, nil, revokedIDs{}, dial, nil)
				servers := []raft.Server{voter("self")}
				var want []string
				for i := range missing {
					s := voter(fmt.Sprintf("v%02d", i))
					servers = append(servers, s, nonvoter(fmt.Sprintf("n%02d", i)))
					if i%3 == 0 {
						dial.answer(s.Address, true)
						want = append(want, string(s.ID))
					}
				}
				start := time.Now()
				got := ap.answeringVoters(context.Background(), servers, map[raft.ServerID]bool{"self": true})
				took := time.Since(start)
				var gotIDs []string
				for _, m := range got {
					gotIDs = append(gotIDs, string(m.ID))
				}
				if !slices.Equal(gotIDs, want) {
					t.Errorf("answering voters %v, want %v", gotIDs, want)
				}
				if len(dial.dialled) != missing {
					t.Errorf("asked %d, want the %d voters missing from gossip", len(dial.dialled), missing)
				}
				rounds := (missing + maxVoterChecks - 1) / maxVoterChecks
				if took > time.Duration(rounds)*voterCheckTimeout {
					t.Errorf("%d voters missing: the pass took %v, want at most %v", missing, took, time.Duration(rounds)*voterCheckTimeout)
				}
				if dial.most > maxVoterChecks {
					t.Errorf("%d asked at once, want at most %d", dial.most, maxVoterChecks)
				}
			})
		})
	}
}

package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
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

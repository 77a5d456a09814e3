package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/internal/testutil/storetest"
	"github.com/shoal-edge/shoal/store"
)

// certChecks confirms the members it was told to and counts the checks.
type certChecks struct {
	mu      sync.Mutex
	ok      map[string]bool
	checked map[string]int
}

func (c *certChecks) checkMember(_ context.Context, m member, _ string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checked[m.Name]++
	if !c.ok[m.Name] {
		return errors.New("certificate names someone else")
	}
	return nil
}

func (c *certChecks) checks(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checked[name]
}

func names(ms []member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	slices.Sort(out)
	return out
}

// The gossip upkeep alone, with real memberlist on loopback and a real
// state file: a node that sees none of the registry's other nodes in
// gossip reaches them; of the live members, those whose certificate backs
// their gossip are verified, each checked once while its address stays;
// a revoked node is no live member; members of another epoch are not
// verified; a member of a newer epoch asks for a rejoin once its
// certificate backs its gossip.
func TestGossipUpkeepAlone(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	a := startMembers(t, "a", key, nil)
	b := startMembers(t, "b", key, nil)
	c := startMembers(t, "c", key, nil)
	t.Cleanup(func() {
		for _, m := range []*members{a, b, c} {
			m.close()
		}
	})
	st, apply := storetest.Fed(t)
	for _, m := range []*members{a, b, c} {
		n := m.ml.LocalNode()
		apply(store.NodeFacts{Node: store.NodeRecord{Name: n.Name, ID: "id-" + n.Name,
			Address: "127.0.0.1", Port: 7000, GossipPort: int(n.Port), Arch: goarch(), OS: "linux"}})
	}
	peers := &certChecks{ok: map[string]bool{"b": true}, checked: map[string]int{}}
	var epoch atomic.Uint64
	epoch.Store(2)
	var leaving atomic.Bool
	rejoin := make(chan uint64, 1)
	g := newGossipUpkeep(gossipUpkeepConfig{ID: "id-a", Advertise: "127.0.0.1", Port: 7000, GossipPort: int(a.ml.LocalNode().Port),
		Members: a, Registry: st, Peers: peers, Epoch: &epoch, Leaving: &leaving, Rejoin: rejoin, Logger: testutil.Logger(t)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.keepGossiping(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	testutil.WaitFor(t, 20*time.Second, func() error {
		if got := names(g.liveMembers()); !slices.Equal(got, []string{"a", "b", "c"}) {
			return fmt.Errorf("a sees %v", got)
		}
		return nil
	})
	for range 2 {
		if got := names(g.verifiedMembers(ctx)); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("verified %v, want [a b]: c's certificate does not back its gossip", got)
		}
	}
	if peers.checks("a") != 0 || peers.checks("b") != 1 || peers.checks("c") != 1 {
		t.Errorf("checks %v, want b and c once each and not this node", peers.checked)
	}

	apply(store.Revoke{ID: "id-c"})
	if got := names(g.liveMembers()); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("live %v once c is revoked, want [a b]", got)
	}
	epoch.Store(3)
	if got := names(g.verifiedMembers(ctx)); !slices.Equal(got, []string{"a"}) {
		t.Errorf("verified %v at another epoch than the members', want [a]", got)
	}

	// c is no longer live, and its certificate never backed its gossip.
	c.setEpoch(7)
	testutil.WaitFor(t, 20*time.Second, func() error {
		if m, _ := memberNamed(a, "c"); m.Meta.Epoch != 7 {
			return fmt.Errorf("a sees c at epoch %d", m.Meta.Epoch)
		}
		return nil
	})
	if e, ok := g.newerEpoch(ctx); ok {
		t.Errorf("newer epoch %d from a revoked member whose certificate does not back its gossip", e)
	}
	b.setEpoch(5)
	select {
	case e := <-rejoin:
		if e != 5 {
			t.Errorf("rejoin at epoch %d, want 5", e)
		}
	case <-time.After(20 * time.Second):
		t.Error("a member of a newer epoch asked for no rejoin")
	}
}

package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
)

func TestDepartureOf(t *testing.T) {
	leaving, _ := json.Marshal(nodeMeta{ID: "x", Leaving: true})
	staying, _ := json.Marshal(nodeMeta{ID: "x"})
	for _, tc := range []struct {
		name string
		meta []byte
		want api.NodeState
	}{
		{"announced its leave", leaving, api.NodeLeft},
		{"said nothing", staying, api.NodeDead},
		{"no meta", nil, api.NodeDead},
		{"garbled meta", []byte("{"), api.NodeDead},
	} {
		if got := departureOf(tc.meta); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// A member is probed at most 2(n-1)-1 intervals apart: the window must be
// longer, or a live member would flicker suspect between two probes.
func TestSuspectAfterOutlastsAProbeRound(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 50} {
		gap := time.Duration(max(2*(n-1)-1, 1)) * time.Second
		if w := suspectAfter(n, time.Second); w <= gap {
			t.Errorf("%d members: suspect after %v, probes up to %v apart", n, w, gap)
		}
	}
}

// startMembers runs gossip for a node named name on a loopback port.
func startMembers(t *testing.T, name string, key []byte, labels map[string]string) *members {
	t.Helper()
	m, err := newMembers(membersConfig{Name: name, ID: "id-" + name, BindAddr: "127.0.0.1", GossipPort: testutil.FreePort(t),
		Advertise: "127.0.0.1", Port: 7000, Epoch: 2, Labels: labels, SecretKey: key, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// kill stops m's gossip without a word to the others, as a node that
// loses power.
func (m *members) kill() {
	m.ml.Shutdown()
	m.stop.Do(func() { close(m.quit) })
	m.loop.Wait()
}

func gossipAddr(m *members) string {
	n := m.ml.LocalNode()
	return joinHostPort(n.Addr.String(), int(n.Port))
}

// memberNamed is the live member name in m's list.
func memberNamed(m *members, name string) (member, bool) {
	for _, mb := range m.list() {
		if mb.Name == name {
			return mb, true
		}
	}
	return member{}, false
}

// Gossip alone, with real memberlist on loopback: a member that joins
// shows alive with its node's gossip (id, cluster port, epoch, labels)
// and nudges the leader's loop; one that leaves shows left, one that
// stops without a word dead; a stranger without the cluster's key never
// shows.
func TestMembersAlone(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	a := startMembers(t, "a", key, nil)
	b := startMembers(t, "b", key, map[string]string{"site": "edge"})
	c := startMembers(t, "c", key, nil)
	stranger := startMembers(t, "x", bytes.Repeat([]byte{8}, 32), nil)
	killed := false
	t.Cleanup(func() {
		for _, m := range []*members{a, b, stranger} {
			m.close()
		}
		if !killed {
			c.close()
		}
	})
	drain(a.changed)
	for _, m := range []*members{b, c} {
		if _, err := m.ml.Join([]string{gossipAddr(a)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stranger.ml.Join([]string{gossipAddr(a)}); err == nil {
		t.Error("a member without the cluster's key joined")
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		mb, ok := memberNamed(a, "b")
		if !ok || mb.State != api.NodeAlive {
			return fmt.Errorf("b = %+v, %v", mb, ok)
		}
		if mb.Meta.ID != "id-b" || mb.Meta.Port != 7000 || mb.Meta.Epoch != 2 || mb.Meta.Labels["site"] != "edge" {
			return fmt.Errorf("b's gossip = %+v", mb.Meta)
		}
		if _, ok := memberNamed(a, "c"); !ok {
			return fmt.Errorf("c not seen")
		}
		return nil
	})
	// The nudge comes from the members' loop, after memberlist lists them.
	select {
	case <-a.changed:
	case <-time.After(10 * time.Second):
		t.Error("members joined without a nudge")
	}
	if _, ok := memberNamed(a, "x"); ok {
		t.Error("the stranger shows as a member")
	}

	if err := b.leave(time.Second); err != nil {
		t.Fatal(err)
	}
	c.kill()
	killed = true
	testutil.WaitFor(t, 30*time.Second, func() error {
		for name, want := range map[string]api.NodeState{"b": api.NodeLeft, "c": api.NodeDead} {
			if d, ok := a.departed(name); !ok || d.state != want {
				return fmt.Errorf("%s departed = %+v, %v; want %s", name, d, ok, want)
			}
			if _, ok := memberNamed(a, name); ok {
				return fmt.Errorf("%s still listed", name)
			}
		}
		return nil
	})
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// A node that left gossip keeps listing its members while its leave waits
// for the leader: memberlist no longer holds its own node then, and asking
// it for that node crashed the daemon half-way through the leave.
func TestListAfterLeavingGossip(t *testing.T) {
	// memberlist drops its own node GossipToTheDeadTime after the leave
	// (30 s by default: shortened here), at its next round of probes.
	m, err := newMembers(membersConfig{Name: "lone", ID: "id-lone", BindAddr: "127.0.0.1", GossipPort: testutil.FreePort(t),
		Advertise: "127.0.0.1", Port: 7000, SecretKey: bytes.Repeat([]byte{7}, 32), Logger: testutil.Logger(t),
		ForgetGoneAfter: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.kill()
	ml := m.ml
	if got := m.list(); len(got) != 1 || got[0].Name != "lone" {
		t.Fatalf("members before the leave: %+v", got)
	}
	if err := ml.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		// LocalNode dereferences the entry memberlist no longer has.
		gone := func() (gone bool) {
			defer func() { gone = recover() != nil }()
			ml.LocalNode()
			return
		}
		if !gone() {
			return errors.New("memberlist still holds its own node")
		}
		return nil
	})
	for _, mb := range m.list() {
		if mb.Name == "lone" {
			t.Errorf("self listed as %s after it left gossip", mb.State)
		}
	}
}

package cluster

import (
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/shoal-edge/shoal/api"
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

// A node that left gossip keeps listing its members while its leave waits
// for the leader: memberlist no longer holds its own node then, and asking
// it for that node crashed the daemon half-way through the leave.
func TestListAfterLeavingGossip(t *testing.T) {
	m := &members{changed: make(chan struct{}, 1), gone: map[string]departure{}, acked: map[string]time.Time{}, self: "lone"}
	c := memberlist.DefaultLocalConfig()
	c.Name, c.BindAddr, c.BindPort, c.AdvertisePort = m.self, "127.0.0.1", 0, 0
	c.Delegate, c.Events, c.Ping = m, m, m
	c.LogOutput = io.Discard
	ml, err := memberlist.Create(c)
	if err != nil {
		t.Fatal(err)
	}
	m.ml = ml
	defer ml.Shutdown()
	if got := m.list(); len(got) != 1 || got[0].Name != "lone" {
		t.Fatalf("members before the leave: %+v", got)
	}
	if err := ml.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	for _, mb := range m.list() {
		if mb.Name == "lone" && mb.State != api.NodeAlive {
			t.Errorf("self listed as %s", mb.State)
		}
	}
}

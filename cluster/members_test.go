package cluster

import (
	"encoding/json"
	"testing"
	"time"

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

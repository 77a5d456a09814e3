package store

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
)

// The FSM judges nothing: an entry the leader committed is applied on
// every replica, even one this release's rules would refuse (an older or
// newer release's leader judged it); only what does not decode is
// refused, alike everywhere. Two replicas fed the same log hold the same
// state.
func TestFSMAppliesWhatTheLeaderCommitted(t *testing.T) {
	judged := app("web", "img:1")
	judged.Restart = "sometimes" // api.Validate refuses this restart policy
	judged.Replicas = -1
	if judged.Validate() == nil {
		t.Fatal("the test's app passes this release's validation: pick one it refuses")
	}
	enc := func(cmd any) []byte {
		b, err := Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	log := []struct {
		name    string
		data    []byte
		refused bool
	}{
		{"an app this release refuses", enc(PutApps{Apps: []api.App{judged}}), false},
		{"a field from a newer release", append([]byte{byte(CmdPutApps)}, `{"apps":[{"name":"db","image":"img:2","replicas":1,"sidecar":{"image":"x"}}]}`...), false},
		{"a count this release refuses", enc(Scale{Replicas: map[string]int{"db": -2}}), false},
		{"an unknown type", []byte{99, '{', '}'}, true},
		{"malformed JSON", []byte{byte(CmdPutApps), '{'}, true},
		{"empty", nil, true},
	}
	a, b := openTest(t), openTest(t)
	for i, e := range log {
		index := uint64(i + 1)
		for _, s := range []*Store{a, b} {
			res := s.FSM().Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: e.data})
			if err, isErr := res.(error); isErr != e.refused {
				t.Fatalf("%s: response %v, refused %v; want refused %v", e.name, res, isErr, e.refused)
			} else if isErr && errors.Is(err, api.ErrInvalid) {
				t.Fatalf("%s: refused as invalid (%v): only a decode failure may refuse an entry", e.name, err)
			}
			if s.AppliedIndex() != index {
				t.Fatalf("%s: applied index %d, want %d", e.name, s.AppliedIndex(), index)
			}
		}
	}
	web, err := a.App("web")
	if err != nil || web.Restart != "sometimes" || web.Replicas != -1 {
		t.Fatalf("web as committed: %+v, %v", web, err)
	}
	if db, err := a.App("db"); err != nil || db.Replicas != -2 {
		t.Fatalf("db as committed and scaled: %+v, %v", db, err)
	}
	sa, _ := a.Snapshot()
	sb, _ := b.Snapshot()
	if d := cmp.Diff(sa, sb); d != "" {
		t.Fatalf("two replicas of one log differ (-a +b):\n%s", d)
	}
}

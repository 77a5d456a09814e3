// Package storetest gives tests a real state file fed through its state
// machine, one log entry after another, as Raft feeds it.
package storetest

import (
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/store"
)

// Fed opens a state file in a temporary dir of t, closed when t ends, and
// returns it with apply, which commits cmd as the next log entry; a
// command the state machine refuses fails t.
func Fed(t testing.TB) (st *store.Store, apply func(cmd any)) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fsm := st.FSM()
	var index uint64
	return st, func(cmd any) {
		t.Helper()
		data, err := store.Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		index++
		if err, ok := fsm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(error); ok {
			t.Fatal(err)
		}
	}
}

package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// An entry the state file cannot take (its disk is full) is neither
// skipped nor a crash: Apply keeps trying it, the store says why it is
// stuck, and the entry is written once there is room. Stopped meanwhile,
// Apply returns without writing, writes no later entry, and Snapshot
// refuses; the next FSM of the store applies the entry.
func TestApplyOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	testutil.MountTmpfs(t, dir, "size=4m")
	s, err := Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	apply(t, s, 1, PutApps{Apps: []api.App{app("web", "img:1")}})
	fill := filepath.Join(dir, "fill")
	fillDisk(t, fill)

	type note struct {
		index uint64
		err   error
	}
	notes := make(chan note, 10)
	fsm := s.FSM()
	fsm.Stalled = func(index uint64, err error) { notes <- note{index, err} }
	big := func(index uint64, name string) *raft.Log {
		a := app(name, "img:1")
		a.Env = map[string]string{"PAD": strings.Repeat("x", 256<<10)}
		data, err := Encode(PutApps{Apps: []api.App{a}})
		if err != nil {
			t.Fatal(err)
		}
		return &raft.Log{Index: index, Type: raft.LogCommand, Data: data}
	}
	done := make(chan any, 1)
	go func() { done <- fsm.Apply(big(2, "big")) }()
	n := <-notes
	if n.index != 2 || !errors.Is(n.err, syscall.ENOSPC) {
		t.Fatalf("told of entry %d: %v; want 2 and ENOSPC", n.index, n.err)
	}
	if st, ok := s.Stall(); !ok || st.Index != 2 || !errors.Is(st.Err, syscall.ENOSPC) {
		t.Fatalf("Stall = %+v, %v", st, ok)
	}
	select {
	case resp := <-done:
		t.Fatalf("Apply returned %v on a full disk, want it to wait for room", resp)
	case <-time.After(2 * stallFirstRetry):
	}
	if got := s.AppliedIndex(); got != 1 {
		t.Fatalf("applied %d on a full disk, want 1", got)
	}

	os.Remove(fill)
	select {
	case resp := <-done:
		if err, isErr := resp.(error); isErr {
			t.Fatalf("Apply with room again: %v", err)
		}
	case <-time.After(3 * stallMaxRetry):
		t.Fatal("Apply did not return once there was room")
	}
	if n := <-notes; n.index != 2 || n.err != nil {
		t.Fatalf("told of entry %d: %v; want 2 written", n.index, n.err)
	}
	if _, ok := s.Stall(); ok || s.AppliedIndex() != 2 {
		t.Fatalf("after room: stalled %v, applied %d", ok, s.AppliedIndex())
	}
	if _, err := s.App("big"); err != nil {
		t.Fatal(err)
	}

	// Full again, and Raft stops.
	fillDisk(t, fill)
	go func() { done <- fsm.Apply(big(3, "big2")) }()
	<-notes
	fsm.Stop()
	if resp := <-done; resp != ErrNotApplied {
		t.Fatalf("Apply stopped on a full disk: %v, want ErrNotApplied", resp)
	}
	os.Remove(fill)
	if resp := fsm.Apply(big(4, "big3")); resp != ErrNotApplied {
		t.Fatalf("Apply after an entry not written: %v, want ErrNotApplied", resp)
	}
	if _, err := fsm.Snapshot(); !errors.Is(err, ErrNotApplied) {
		t.Fatalf("Snapshot after an entry not written: %v", err)
	}
	if got := s.AppliedIndex(); got != 2 {
		t.Fatalf("applied %d, want 2: nothing is written past an entry not written", got)
	}
	// The next Raft replays from the file's index.
	next := s.FSM()
	if resp := next.Apply(big(3, "big2")); resp != nil {
		if _, isErr := resp.(error); isErr {
			t.Fatal(resp)
		}
	}
	if resp := next.Apply(big(4, "big3")); resp != nil {
		if _, isErr := resp.(error); isErr {
			t.Fatal(resp)
		}
	}
	if got := s.AppliedIndex(); got != 4 {
		t.Fatalf("applied %d after the replay, want 4", got)
	}
}

// fillDisk writes path until its file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int{1 << 20, 4096} {
		chunk := make([]byte, size)
		for {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
}

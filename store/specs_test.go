package store

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/shoal-edge/shoal/api"
)

func cmdApp(name, cmd string) api.App {
	a := app(name, "img:1")
	a.Command = []string{cmd}
	return a
}

// specCmd reads the command of app at version, or "" if the state holds
// no such version.
func specCmd(t *testing.T, s *Store, name string, version uint64) string {
	t.Helper()
	a, err := s.Spec(name, version)
	if errors.Is(err, api.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != version {
		t.Fatalf("Spec(%s, %d) has version %d", name, version, a.Version)
	}
	return a.Command[0]
}

// The state keeps every version of an app that an allocation names, and
// drops a version once none does; on disk, across a reopen, and through a
// Raft snapshot.
func TestSpecVersionsKeptWhileNamed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	at := func(index uint64, version uint64) api.Allocation {
		return api.Allocation{App: "web", Index: int(index), Version: version, Node: "n1"}
	}
	apply(t, s, 1, PutApps{Apps: []api.App{cmdApp("web", "one")}})
	apply(t, s, 2, SetAllocs{Put: []api.Allocation{at(0, 1), at(1, 1)}})
	apply(t, s, 3, PutApps{Apps: []api.App{cmdApp("web", "three")}})
	apply(t, s, 4, SetAllocs{Put: []api.Allocation{at(0, 3)}}) // web/1 still at 1
	apply(t, s, 5, PutApps{Apps: []api.App{cmdApp("web", "five")}})

	// Version 1 is named by web/1, 3 by web/0, 5 is current.
	check := func(when string, want map[uint64]string) {
		t.Helper()
		for v, cmd := range want {
			if got := specCmd(t, s, "web", v); got != cmd {
				t.Errorf("%s: version %d runs %q, want %q", when, v, got, cmd)
			}
		}
	}
	check("two named versions", map[uint64]string{1: "one", 3: "three", 5: "five"})
	st, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var kept []uint64
	for _, a := range st.Specs {
		kept = append(kept, a.Version)
	}
	if !slices.Equal(kept, []uint64{1, 3}) {
		t.Fatalf("specs/ holds versions %v, want [1 3]", kept)
	}

	s.Close()
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	check("after a reopen", map[uint64]string{1: "one", 3: "three", 5: "five"})
	other := openTest(t)
	snapshotInto(t, s, other)
	if got := specCmd(t, other, "web", 1); got != "one" {
		t.Errorf("a replica restored from a snapshot runs version 1 as %q", got)
	}

	// web/1 moves to 5: nothing names 1 any more.
	apply(t, s, 6, SetAllocs{Put: []api.Allocation{at(1, 5)}})
	check("web/1 moved", map[uint64]string{1: "", 3: "three", 5: "five"})
	// web/0 goes (scaled down): 3 goes with it.
	apply(t, s, 7, SetAllocs{Delete: []AllocKey{{App: "web", Index: 0}}})
	check("web/0 deleted", map[uint64]string{3: "", 5: "five"})
	if st, _ := s.Snapshot(); len(st.Specs) != 0 {
		t.Fatalf("specs/ still holds %+v", st.Specs)
	}

	// A change while nothing names the old version keeps nothing.
	apply(t, s, 8, SetAllocs{Delete: []AllocKey{{App: "web", Index: 1}}})
	apply(t, s, 9, PutApps{Apps: []api.App{cmdApp("web", "nine")}})
	check("unnamed version replaced", map[uint64]string{5: "", 9: "nine"})
	// A replica count is no new version: nothing to keep.
	apply(t, s, 10, SetAllocs{Put: []api.Allocation{at(0, 9)}})
	apply(t, s, 11, Scale{Replicas: map[string]int{"web": 4}})
	if st, _ := s.Snapshot(); len(st.Specs) != 0 {
		t.Fatalf("a scale kept a version: %+v", st.Specs)
	}
}

// Deleting an app drops every version of it; an app of the same name
// applied later does not find them.
func TestSpecVersionsGoWithTheirApp(t *testing.T) {
	s := openTest(t)
	apply(t, s, 1, PutApps{Apps: []api.App{cmdApp("web", "one"), cmdApp("db", "one")}})
	apply(t, s, 2, SetAllocs{Put: []api.Allocation{{App: "web", Version: 1, Node: "n1"}, {App: "db", Version: 1, Node: "n1"}}})
	apply(t, s, 3, PutApps{Apps: []api.App{cmdApp("web", "three"), cmdApp("db", "three")}})
	apply(t, s, 4, DeleteApps{Names: []string{"web"}})
	if got := specCmd(t, s, "web", 1); got != "" {
		t.Fatalf("version 1 of a deleted app is still there: %q", got)
	}
	if got := specCmd(t, s, "db", 1); got != "one" {
		t.Fatalf("db's version 1 went with web: %q", got)
	}
	st, _ := s.Snapshot()
	if len(st.Specs) != 1 || st.Specs[0].Name != "db" {
		t.Fatalf("specs/ holds %+v, want db's version 1 only", st.Specs)
	}
}

package store

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func apply(t *testing.T, s *Store, index uint64, cmd any) any {
	t.Helper()
	data, err := Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return s.FSM().Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
}

func app(name, image string) api.App {
	a := api.App{Name: name, Image: image}
	a.Defaults()
	return a
}

func TestPutAppsVersions(t *testing.T) {
	s := openTest(t)
	res := apply(t, s, 1, PutApps{Apps: []api.App{app("web", "hello:1")}})
	want := []api.ApplyResult{{Name: "web", Version: 1, Changed: true}}
	if d := cmp.Diff(want, res); d != "" {
		t.Fatalf("first apply (-want +got):\n%s", d)
	}
	// Same spec again: unchanged, version kept.
	res = apply(t, s, 2, PutApps{Apps: []api.App{app("web", "hello:1")}})
	if d := cmp.Diff([]api.ApplyResult{{Name: "web", Version: 1}}, res); d != "" {
		t.Fatalf("same apply (-want +got):\n%s", d)
	}
	res = apply(t, s, 3, PutApps{Apps: []api.App{app("web", "hello:2")}})
	if d := cmp.Diff([]api.ApplyResult{{Name: "web", Version: 3, Changed: true}}, res); d != "" {
		t.Fatalf("changed apply (-want +got):\n%s", d)
	}
	got, err := s.App("web")
	if err != nil || got.Image != "hello:2" || got.Version != 3 {
		t.Fatalf("App(web) = %+v, %v", got, err)
	}
	if s.AppliedIndex() != 3 {
		t.Fatalf("applied %d, want 3", s.AppliedIndex())
	}
}

func TestReplayIsSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, 1, PutApps{Apps: []api.App{app("web", "hello:1")}})
	apply(t, s, 2, DeleteApps{Names: []string{"web"}})
	s.Close()

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Raft replays entry 1 after a restart: it must not bring web back.
	apply(t, s, 1, PutApps{Apps: []api.App{app("web", "hello:1")}})
	if _, err := s.App("web"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("replayed entry re-applied: App(web) err = %v", err)
	}
}

func TestFailedCommandRollsBack(t *testing.T) {
	s := openTest(t)
	apply(t, s, 1, PutApps{Apps: []api.App{app("a", "x")}})
	res := apply(t, s, 2, DeleteApps{Names: []string{"a", "missing"}})
	if err, ok := res.(error); !ok || !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("delete with unknown name: got %v, want ErrNotFound", res)
	}
	if _, err := s.App("a"); err != nil {
		t.Fatalf("a was deleted by a failed command: %v", err)
	}
	if s.AppliedIndex() != 2 {
		t.Fatalf("failed command did not advance the index: %d", s.AppliedIndex())
	}
}

func TestAllocsAndDeleteApp(t *testing.T) {
	s := openTest(t)
	apply(t, s, 1, PutApps{Apps: []api.App{app("web", "x"), app("db", "y")}})
	apply(t, s, 2, SetAllocs{Put: []api.Allocation{
		{App: "web", Index: 0, Version: 1, Node: "n1"},
		{App: "web", Index: 1, Version: 1, Node: "n1"},
		{App: "db", Index: 0, Version: 1, Node: "n1"},
		{App: "gone", Index: 0, Version: 1, Node: "n1"}, // app unknown: dropped
	}})
	allocs, _ := s.Allocations()
	if len(allocs) != 3 {
		t.Fatalf("got %d allocations, want 3: %+v", len(allocs), allocs)
	}
	apply(t, s, 3, DeleteApps{Names: []string{"web"}})
	allocs, _ = s.Allocations()
	if len(allocs) != 1 || allocs[0].App != "db" {
		t.Fatalf("after rm web: %+v", allocs)
	}
}

func TestSnapshotRestore(t *testing.T) {
	src := openTest(t)
	apply(t, src, 1, Bootstrap{ClusterID: "c1"})
	apply(t, src, 2, PutApps{Apps: []api.App{app("web", "x")}})
	apply(t, src, 3, PutNode{Node: NodeRecord{Name: "n1", ID: "id1", Labels: map[string]string{"site": "a"}}})
	apply(t, src, 4, SetAllocs{Put: []api.Allocation{{App: "web", Version: 2, Node: "n1"}}})
	dst := openTest(t)
	apply(t, dst, 1, PutApps{Apps: []api.App{app("stale", "z")}})
	snap := snapshotInto(t, src, dst)
	a, _ := src.Snapshot()
	b, _ := dst.Snapshot()
	if d := cmp.Diff(a, b); d != "" {
		t.Fatalf("restored state differs (-src +dst):\n%s", d)
	}
	if id, _ := dst.ClusterID(); id != "c1" {
		t.Fatalf("cluster id %q", id)
	}
	if err := dst.FSM().Restore(io.NopCloser(bytes.NewReader([]byte(`{"format":"other"}`)))); err == nil {
		t.Fatal("foreign snapshot accepted")
	}
	if err := dst.FSM().Restore(io.NopCloser(bytes.NewReader(snap[:10]))); err == nil {
		t.Fatal("truncated snapshot accepted")
	}
	b2, _ := dst.Snapshot()
	if d := cmp.Diff(a, b2); d != "" {
		t.Fatalf("bad restore changed the state (-want +got):\n%s", d)
	}
}

// snapshotInto restores a Raft snapshot of src's FSM into dst's and
// returns the snapshot.
func snapshotInto(t *testing.T, src, dst *Store) []byte {
	t.Helper()
	snap, err := src.FSM().Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if err := dst.FSM().Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }

func FuzzDecode(f *testing.F) {
	for _, c := range []any{Bootstrap{ClusterID: "x"}, PutApps{Apps: []api.App{app("a", "b")}}, DeleteApps{Names: []string{"a"}},
		PutSecrets{Secrets: LegacySecrets{JoinSecret: []byte("s")}}, PutSealedSecrets{Secrets: Secrets{SealedJoinSecret: []byte("s")}}} {
		b, _ := Encode(c)
		f.Add(b)
	}
	// What decodes is a command of the type its first byte names, and
	// encodes back to one that decodes the same: every node that applies
	// the entry sees one command.
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := decode(data)
		if err != nil {
			return
		}
		again, err := Encode(cmd)
		if err != nil {
			t.Fatalf("decoded %T from %q, which does not encode: %v", cmd, data, err)
		}
		if again[0] != data[0] {
			t.Fatalf("type %d decoded as %T, which encodes as type %d", data[0], cmd, again[0])
		}
		back, err := decode(again)
		if err != nil || !reflect.DeepEqual(back, cmd) {
			t.Fatalf("%T does not survive encoding: %+v, then %+v (%v)", cmd, cmd, back, err)
		}
	})
}

func TestFinishedJournal(t *testing.T) {
	s := openTest(t)
	st := api.InstanceStatus{App: "job", Instance: "job/0", Version: 3, State: api.StateExited, ExitCode: 0}
	if _, ok := s.Finished("job", 0, 3); ok {
		t.Fatal("finished before anything was recorded")
	}
	if err := s.SetFinished(st, 0); err != nil {
		t.Fatal(err)
	}
	got, ok := s.Finished("job", 0, 3)
	if !ok || got.State != api.StateExited {
		t.Fatalf("Finished = %+v, %v", got, ok)
	}
	if _, ok := s.Finished("job", 0, 4); ok {
		t.Fatal("a new version counts as finished")
	}
	// Local records are not part of the replicated state: a Raft snapshot
	// holds the desired state's app and not the local record, and another
	// replica restored from it knows nothing of the record.
	if err, ok := apply(t, s, 1, PutApps{Apps: []api.App{app("desired-app", "img:1")}}).(error); ok {
		t.Fatal(err)
	}
	other := openTest(t)
	raw := snapshotInto(t, s, other)
	if !bytes.Contains(raw, []byte("desired-app")) {
		t.Fatalf("the snapshot lacks the desired state's app: %s", raw)
	}
	if bytes.Contains(raw, []byte(`"job"`)) || bytes.Contains(raw, []byte("job/0")) {
		t.Fatalf("the local record leaked into the Raft snapshot: %s", raw)
	}
	if _, ok := other.Finished("job", 0, 3); ok {
		t.Fatal("a replica restored from the snapshot has the local record")
	}
	if err := s.ForgetFinished("job", 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Finished("job", 0, 3); ok {
		t.Fatal("still finished after ForgetFinished")
	}
}

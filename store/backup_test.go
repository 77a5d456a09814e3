package store

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
)

func TestBackupRestore(t *testing.T) {
	src := openTest(t)
	apply(t, src, 1, Bootstrap{ClusterID: "old"})
	apply(t, src, 2, PutApps{Apps: []api.App{app("web", "hello:1"), app("db", "pg:16")}})
	apply(t, src, 3, NodeFacts{Node: NodeRecord{Name: "pi-1", ID: "x"}})
	apply(t, src, 4, SetLabels{Node: "pi-1", Set: map[string]string{"site": "a"}})
	apply(t, src, 5, PutSecrets{Secrets: LegacySecrets{JoinSecret: []byte("s3cret")}})
	apply(t, src, 6, PutSealedSecrets{Secrets: Secrets{SealedJoinSecret: []byte("s3aled")}})
	data, err := src.Backup(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("s3cret")) || bytes.Contains(data, []byte("join_secret")) || bytes.Contains(data, []byte("s3aled")) {
		t.Fatal("a backup carries the cluster's secrets")
	}
	b, err := ReadBackup(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}

	dst := openTest(t)
	apply(t, dst, 1, Bootstrap{ClusterID: "new"})
	if res := apply(t, dst, 2, RestoreBackup{Backup: b}); res != nil {
		t.Fatalf("restore: %v", res)
	}
	apps, _ := dst.Apps()
	if len(apps) != 2 {
		t.Fatalf("restored apps: %+v", apps)
	}
	// pi-1 has not joined the new cluster: its labels wait for it, and
	// no node shows for them (a phantom would be scheduled on).
	if nodes, _ := dst.Nodes(); len(nodes) != 0 {
		t.Fatalf("nodes after restoring the labels of a node that has not joined: %+v", nodes)
	}
	st, _ := dst.Snapshot()
	if len(st.Nodes) != 0 || len(st.Waiting) != 1 || st.Waiting[0].Labels["site"] != "a" {
		t.Fatalf("state after restore: nodes %+v, waiting %+v", st.Nodes, st.Waiting)
	}
	// Waiting settings survive a backup and a Raft snapshot.
	if again, err := dst.Backup(time.Now()); err != nil || !bytes.Contains(again, []byte(`"pi-1"`)) {
		t.Fatalf("a backup of the restored cluster lost pi-1's labels: %v\n%s", err, again)
	}
	copied := openTest(t)
	snapshotInto(t, dst, copied)
	if st, _ := copied.Snapshot(); len(st.Waiting) != 1 || st.Waiting[0].Labels["site"] != "a" {
		t.Fatalf("waiting settings after a Raft snapshot: %+v", st.Waiting)
	}
	// The node joins later under its name and takes its labels.
	apply(t, dst, 3, NodeFacts{Node: NodeRecord{Name: "pi-1", ID: "y", Address: "10.0.0.9"}})
	nodes, _ := dst.Nodes()
	nodes, _ = dst.Nodes()
	if nodes[0].ID != "y" || nodes[0].Labels["site"] != "a" {
		t.Fatalf("rejoined node: %+v", nodes[0])
	}
	// A second restore meets the apps of the first.
	res := apply(t, dst, 4, RestoreBackup{Backup: b})
	if err, ok := res.(error); !ok || !errors.Is(err, api.ErrConflict) {
		t.Fatalf("restore into a cluster with apps: %v", res)
	}
}

func TestReadBackupRefusesDamage(t *testing.T) {
	s := openTest(t)
	apply(t, s, 1, PutApps{Apps: []api.App{app("web", "hello:1")}})
	data, err := s.Backup(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	altered := bytes.Replace(data, []byte("hello:1"), []byte("hello:2"), 1)
	cases := map[string][]byte{
		"truncated": data[:len(data)/2],
		"altered":   altered,
		"foreign":   []byte(`{"format":"something else"}`),
		"empty":     nil,
		"no sum":    []byte("shoal-backup 1\n{}\n"),
	}
	for name, d := range cases {
		_, err := ReadBackup(bytes.NewReader(d))
		if !errors.Is(err, ErrBadBackup) {
			t.Errorf("%s: %v, want ErrBadBackup", name, err)
		}
	}
	if _, err := ReadBackup(bytes.NewReader(altered)); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("altered: %v", err)
	}
}

func TestRevokedIDs(t *testing.T) {
	s := openTest(t)
	apply(t, s, 1, NodeFacts{Node: NodeRecord{Name: "pi", ID: "old"}})
	if s.Revoked("old") {
		t.Fatal("a registered node is revoked")
	}
	// A new node takes the dead one's name over: the old id is done.
	apply(t, s, 2, NodeFacts{Node: NodeRecord{Name: "pi", ID: "new"}})
	apply(t, s, 3, Revoke{ID: "gone"})
	if !s.Revoked("old") || !s.Revoked("gone") || s.Revoked("new") {
		t.Fatalf("revoked: old %v gone %v new %v", s.Revoked("old"), s.Revoked("gone"), s.Revoked("new"))
	}
	// Raft snapshots carry the list.
	dst := openTest(t)
	snapshotInto(t, s, dst)
	if !dst.Revoked("old") || !dst.Revoked("gone") {
		t.Fatal("revoked ids lost in a snapshot")
	}
}

func TestResetKeepsLocalRecords(t *testing.T) {
	s := openTest(t)
	apply(t, s, 1, Bootstrap{ClusterID: "c"})
	apply(t, s, 2, PutApps{Apps: []api.App{app("web", "hello:1")}})
	if err := s.SetFinished(api.InstanceStatus{App: "web", Instance: "web/0", Version: 2, State: api.StateExited}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	apps, _ := s.Apps()
	id, _ := s.ClusterID()
	if len(apps) != 0 || id != "" || s.AppliedIndex() != 0 {
		t.Fatalf("after reset: apps %v cluster %q applied %d", apps, id, s.AppliedIndex())
	}
	if _, ok := s.Finished("web", 0, 2); !ok {
		t.Fatal("a local record was lost in the reset")
	}
	// Entries from the rejoined cluster apply from the start again.
	apply(t, s, 1, Bootstrap{ClusterID: "c2"})
	if id, _ := s.ClusterID(); id != "c2" {
		t.Fatalf("cluster after rejoin: %q", id)
	}
}

func TestScale(t *testing.T) {
	s := openTest(t)
	apply(t, s, 1, PutApps{Apps: []api.App{app("web", "hello:1")}})
	g := app("agent", "hello:1")
	g.Mode, g.Replicas = api.ModeGlobal, 0
	apply(t, s, 2, PutApps{Apps: []api.App{g}})
	res := apply(t, s, 3, Scale{Replicas: map[string]int{"web": 3}})
	// The count changes, the version (and with it every running
	// instance) stays.
	if r, ok := res.([]api.ApplyResult); !ok || len(r) != 1 || r[0].Version != 1 || !r[0].Changed {
		t.Fatalf("scale: %+v", res)
	}
	if a, _ := s.App("web"); a.Replicas != 3 {
		t.Fatalf("replicas after scale: %d", a.Replicas)
	}
	index := uint64(4)
	for name, cmd := range map[string]Scale{
		"unknown": {Replicas: map[string]int{"web": 1, "nosuch": 2}},
		"global":  {Replicas: map[string]int{"agent": 2}},
	} {
		index++
		if _, ok := apply(t, s, index, cmd).(error); !ok {
			t.Errorf("%s: scale accepted", name)
		}
		if a, _ := s.App("web"); a.Replicas != 3 {
			t.Errorf("%s: a refused scale changed web to %d", name, a.Replicas)
		}
	}
}

// Revoked is asked on every connection and node call: it answers from
// the list as of the last commit, whichever way the list changed, without
// decoding it again while nothing changed.
func TestRevokedFollowsTheState(t *testing.T) {
	s := openTest(t)
	apply(t, s, 1, Bootstrap{ClusterID: "c"})
	if s.Revoked("a") {
		t.Fatal("revoked before any revocation")
	}
	apply(t, s, 2, Revoke{ID: "a"})
	if !s.Revoked("a") || s.Revoked("b") {
		t.Fatalf("after revoking a: a %v b %v", s.Revoked("a"), s.Revoked("b"))
	}
	if allocs := testing.AllocsPerRun(100, func() { s.Revoked("a") }); allocs != 0 {
		t.Errorf("Revoked allocates %v times a call while the state stays: it reads the list again", allocs)
	}
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	if s.Revoked("a") {
		t.Fatal("revoked after a reset of the replicated state")
	}
	src := openTest(t)
	apply(t, src, 1, Revoke{ID: "b"})
	snapshotInto(t, src, s)
	if s.Revoked("a") || !s.Revoked("b") {
		t.Fatalf("after a snapshot restore: a %v b %v", s.Revoked("a"), s.Revoked("b"))
	}
}

// A lookup racing a revocation never keeps the list it read before it.
func TestRevokedRacingARevocation(t *testing.T) {
	s := openTest(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					s.Revoked("x")
				}
			}
		}()
	}
	for i := uint64(1); i <= 50; i++ {
		id := fmt.Sprint("n", i)
		apply(t, s, i, Revoke{ID: id})
		if !s.Revoked(id) {
			close(stop)
			wg.Wait()
			t.Fatalf("%s not revoked right after its revocation was applied", id)
		}
	}
	close(stop)
	wg.Wait()
}

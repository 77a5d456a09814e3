package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/shoal-edge/shoal/api"
	bolt "go.etcd.io/bbolt"
)

// testdata/state-61a03ad.db was written by the previous release (commit
// 61a03ad, schema 1): `shoal up` bootstrapped a node "fixture" with
// --label site=lab, then
//
//	shoal apply -f app.yaml   # web (2 replicas) and agent (global)
//	shoal apply -f app.yaml   # web's GREETING changed: version 10
//	shoal scale web=3
//
// and the node stopped (SIGTERM). The images were never pulled.
const prevRelease = "testdata/state-61a03ad.db"

// copyFixture copies a committed state file into the test's directory:
// Open migrates in place, and the fixture must stay as it was released.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A state file written by the previous release opens, migrates to this
// release's schema, and reads back what that release wrote; the FSM then
// keeps versions in it as in a new file.
func TestOpenPreviousRelease(t *testing.T) {
	path := copyFixture(t, prevRelease)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	if from, now := s.Schema(); from != 1 || now != schemaVersion {
		t.Fatalf("schema: opened at %d, now %d; want 1, %d", from, now, schemaVersion)
	}
	web, err := s.App("web")
	if err != nil {
		t.Fatal(err)
	}
	if web.Image != "registry.invalid/hello:1" || !slices.Equal(web.Command, []string{"/hello", "-listen", ":8080"}) ||
		web.Env["GREETING"] != "v3-from-the-previous-release" || web.Replicas != 3 || web.Version != 10 || web.Restart != api.RestartOnFailure {
		t.Fatalf("web from the previous release: %+v", web)
	}
	if agent, err := s.App("agent"); err != nil || agent.Mode != api.ModeGlobal {
		t.Fatalf("agent from the previous release: %+v, %v", agent, err)
	}
	allocs, err := s.Allocations()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range allocs {
		names = append(names, a.Instance())
		if a.Node != "fixture" {
			t.Errorf("%s on node %q", a.Instance(), a.Node)
		}
		if got, err := s.Spec(a.App, a.Version); err != nil || got.Name != a.App {
			t.Errorf("%s: its version %d reads %+v, %v", a.Instance(), a.Version, got, err)
		}
	}
	if !slices.Equal(names, []string{"agent/0", "web/0", "web/1", "web/2"}) {
		t.Fatalf("allocations %v", names)
	}
	nodes, err := s.Nodes()
	if err != nil || len(nodes) != 1 || nodes[0].Name != "fixture" || nodes[0].Labels["site"] != "lab" {
		t.Fatalf("nodes %+v, %v", nodes, err)
	}
	if id, _ := s.ClusterID(); id == "" {
		t.Fatal("no cluster id")
	}
	if _, ok, err := s.Secrets(); !ok || err != nil {
		t.Fatalf("sealed secrets: %v, %v", ok, err)
	}

	// The log goes on from the applied index the file holds: a new
	// version of web keeps version 10 while its instances name it.
	next := s.AppliedIndex() + 1
	web.Env = map[string]string{"GREETING": "this-release"}
	apply(t, s, next, PutApps{Apps: []api.App{web}})
	if old, err := s.Spec("web", 10); err != nil || old.Env["GREETING"] != "v3-from-the-previous-release" {
		t.Fatalf("version 10 after a change in a migrated file: %+v, %v", old, err)
	}

	s.Close()
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	if from, now := s.Schema(); from != schemaVersion || now != schemaVersion {
		t.Fatalf("reopened at schema %d, want %d: migrated twice?", from, now)
	}
}

// A new file runs every migration; its buckets are those a migrated one
// has.
func TestOpenNewFile(t *testing.T) {
	s := openTest(t)
	if from, now := s.Schema(); from != 0 || now != schemaVersion {
		t.Fatalf("schema of a new file: opened at %d, now %d", from, now)
	}
	migrated := copyFixture(t, prevRelease)
	m, err := Open(migrated)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if a, b := topBuckets(t, s), topBuckets(t, m); !slices.Equal(a, b) {
		t.Fatalf("new file has buckets %v, a migrated one %v", a, b)
	}
}

func topBuckets(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			out = append(out, string(name))
			return nil
		})
	})
	return out
}

// A file from a newer shoal is refused, and left as it was.
func TestOpenNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, u64(schemaVersion+1))
	})
	s.Close()
	before, _ := os.ReadFile(path)
	_, err = Open(path)
	var newer *NewerSchemaError
	if !errors.As(err, &newer) || newer.File != schemaVersion+1 {
		t.Fatalf("Open of a newer file: %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("the refused file was written to")
	}
}

// Migrations are numbered 1, 2, ... in order, the last one is the schema
// this code writes, and each is named.
func TestMigrationsOrdered(t *testing.T) {
	for i, m := range migrations {
		if m.version != uint64(i+1) || m.name == "" || m.migrate == nil {
			t.Fatalf("migration %d: %+v", i, m)
		}
	}
	if last := migrations[len(migrations)-1].version; last != schemaVersion {
		t.Fatalf("last migration %d, schema %d", last, schemaVersion)
	}
}

// A failed migration leaves the file at its old schema, untouched.
func TestFailedMigrationLeavesTheFile(t *testing.T) {
	path := copyFixture(t, prevRelease)
	before, _ := os.ReadFile(path)
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	migrations = slices.Clone(saved)
	migrations[1].migrate = func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket(bucketSpecs); err != nil {
			return err
		}
		return io.ErrUnexpectedEOF
	}
	if _, err := Open(path); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Open with a failing migration: %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("a failed migration wrote to the file")
	}
	migrations = saved
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if from, _ := s.Schema(); from != 1 {
		t.Fatalf("after the failed migration the file was at schema %d, want 1", from)
	}
}

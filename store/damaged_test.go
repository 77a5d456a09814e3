package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/api"
	bolt "go.etcd.io/bbolt"
)

// A state file cut short refuses to open with an error that names it and
// says what to do; before, bbolt touched the missing pages and the process
// died of SIGBUS. Every length it was cut to is tried, at page bounds and
// between them; the whole file still opens.
func TestOpenDamagedStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// Enough apps that the file grows past its first few pages.
	for i := range 200 {
		a := app(fmt.Sprintf("app%03d", i), "registry.example/img:"+strings.Repeat("x", 100))
		apply(t, s, uint64(i+1), PutApps{Apps: []api.App{a}})
	}
	s.Close()
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(whole) < 8*4096 {
		t.Fatalf("state file of %d bytes: too small to cut", len(whole))
	}
	for _, size := range []int{100, 4096, 8192, 8192 + 100, 12288, len(whole) / 2} {
		if err := os.WriteFile(path, whole[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(path)
		var de *DamagedError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "mv ") {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open of the file cut to %d of %d bytes: %v, want it refused as damaged", size, len(whole), err)
		}
	}
	if err := os.WriteFile(path, whole, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatalf("Open of the whole file: %v", err)
	}
	defer s.Close()
	if apps, _ := s.Apps(); len(apps) != 200 {
		t.Errorf("apps in the whole file: %d, want 200", len(apps))
	}
}

// A state file whose format number cannot be read is refused, named,
// and left as it was: read as 0 it was taken for a new file and
// "migrated" over the state it holds.
func TestOpenUnreadableSchema(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(*bolt.Tx) error
		want   string
	}{
		{"short value", func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte{0, 2}) },
			"its meta/schema value is 2 bytes (0002), not a format number of 8"},
		{"long value", func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, make([]byte, 9)) },
			"its meta/schema value is 9 bytes"},
		{"zero", func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, u64(0)) },
			"its meta/schema value is 0, which no release wrote"},
		{"key gone", func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keySchema) },
			"its meta/schema key is missing"},
		{"meta gone", func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketMeta) },
			"it has no meta bucket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			apply(t, s, 1, PutApps{Apps: []api.App{app("web", "img:1")}})
			if err := s.db.Update(tc.damage); err != nil {
				t.Fatal(err)
			}
			s.Close()
			before, _ := os.ReadFile(path)
			s, err = Open(path)
			if err == nil {
				s.Close()
			}
			var de *DamagedError
			want := fmt.Sprintf("state file %s is damaged: %s", path, tc.want)
			if !errors.As(err, &de) || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "mv "+path) {
				t.Fatalf("Open: %v\nwant it refused as damaged: %s...", err, want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("the refused file was written to")
			}
		})
	}
}

package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestRemoveUnlessUsed(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	a := mustImport(t, s, dockerArchive(t, helloImage(t, "a"), false, "a:1", "a:2"))[0]
	b := mustImport(t, s, dockerArchive(t, helloImage(t, "b"), false, "b:1"))[0]
	dirA, _, err := s.Rootfs(ctx, "a:1")
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	inUse := func(id string) bool {
		asked = append(asked, id)
		if _, err := s.List(); err != nil { // callbacks may use the store
			t.Error(err)
		}
		return id == a.ID
	}

	// Removing one of two names deletes nothing, so nothing is asked.
	if err := s.RemoveUnlessUsed("a:1", inUse); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 0 {
		t.Errorf("untagging asked inUse about %v", asked)
	}
	// The last name of an image in use stays, and so does its rootfs.
	err = s.RemoveUnlessUsed("a:2", inUse)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), a.ID) {
		t.Errorf("RemoveUnlessUsed(a:2) = %v, want ErrInUse naming %s", err, a.ID)
	}
	if _, err := s.Get("a:2"); err != nil {
		t.Errorf("a:2 after refused removal: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dirA, "hello")); err != nil {
		t.Errorf("rootfs of the image in use: %v", err)
	}
	if err := s.RemoveUnlessUsed(a.ID, inUse); !errors.Is(err, ErrInUse) {
		t.Errorf("RemoveUnlessUsed(ID) = %v, want ErrInUse", err)
	}
	// An image nobody uses goes.
	asked = nil
	if err := s.RemoveUnlessUsed("b:1", inUse); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{b.ID}, asked); diff != "" {
		t.Errorf("inUse asked (-want +got):\n%s", diff)
	}
	if _, err := s.Get("b:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("b:1 after removal: %v", err)
	}
	if err := s.RemoveUnlessUsed("b:1", inUse); !errors.Is(err, ErrNotFound) {
		t.Errorf("second removal = %v, want ErrNotFound", err)
	}
	// Once the container is gone, so can the image be.
	if err := s.RemoveUnlessUsed("a:2", func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"blobs/sha256", "rootfs"} {
		if ents, _ := os.ReadDir(s.path(d)); len(ents) != 0 {
			t.Errorf("%s holds %d entries after removing every image", d, len(ents))
		}
	}
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	mustImport(t, s, dockerArchive(t, helloImage(t, "kept"), false, "kept:1"))
	if _, _, err := s.Rootfs(ctx, "kept:1"); err != nil {
		t.Fatal(err)
	}
	live := snapshot(t, s.root)
	if freed, err := s.GC(); err != nil || freed != 0 {
		t.Errorf("GC of a clean store = %d, %v", freed, err)
	}

	// Garbage as a crash or a failed Remove leaves it.
	write := func(rel, data string) {
		p := s.path(rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("blobs/sha256/"+strings.Repeat("a", 64), "orphan blob")  // 11
	write("rootfs/"+strings.Repeat("b", 64)+"/etc/motd", "orphan") // 6
	write("tmp/stage-1/blob-1", "stale")                           // 5
	write(".index.json.tmp-123", "{}")                             // 2
	freed, err := s.GC()
	if err != nil {
		t.Fatal(err)
	}
	if freed != 11+6+5+2 {
		t.Errorf("GC freed %d bytes, want %d", freed, 11+6+5+2)
	}
	if diff := cmp.Diff(live, snapshot(t, s.root)); diff != "" {
		t.Errorf("after GC (-want +got):\n%s", diff)
	}
	if _, _, err := s.Rootfs(ctx, "kept:1"); err != nil {
		t.Errorf("Rootfs after GC: %v", err)
	}
}

// TestGCConcurrentWithImportRootfsRemove races GC and Remove against imports
// that find their blobs already stored and against unpacking: every import
// must end with all its blobs present, every unpack must succeed.
func TestGCConcurrentWithImportRootfsRemove(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	img := helloImage(t, "shared")
	asA := dockerArchive(t, img, false, "a:1")
	asB := dockerArchive(t, img, false, "b:1")
	const rounds = 30
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() { // GC in a loop
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.GC(); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Go(func() { // the same blobs under another name, added and removed
		for range rounds {
			mustImportOrError(t, s, asB)
			if err := s.Remove("b:1"); err != nil && !errors.Is(err, ErrNotFound) {
				t.Error(err)
			}
		}
	})
	for range rounds {
		got := mustImportOrError(t, s, asA)
		if got == nil {
			break
		}
		checkBlobs(t, s, got[0].Digest)
		if _, _, err := s.Rootfs(ctx, "a:1"); err != nil {
			t.Errorf("Rootfs during GC: %v", err)
		}
		if err := s.Remove("a:1"); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"blobs/sha256", "rootfs", "tmp"} {
		if ents, _ := os.ReadDir(s.path(d)); len(ents) != 0 {
			t.Errorf("%s holds %d entries at the end", d, len(ents))
		}
	}
	if len(s.busy) != 0 {
		t.Errorf("busy paths left: %v", s.busy)
	}
}

func mustImportOrError(t *testing.T, s *Store, archive []byte) []Image {
	imgs, err := s.Import(context.Background(), strings.NewReader(string(archive)))
	if err != nil {
		t.Errorf("Import: %v", err)
		return nil
	}
	return imgs
}

// checkBlobs fails unless every blob the manifest digest needs is stored;
// the caller knows a name still refers to it.
func checkBlobs(t *testing.T, s *Store, digest string) {
	t.Helper()
	h, _ := v1.NewHash(digest)
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.readManifest(h)
	if err != nil {
		t.Errorf("manifest of a just imported image: %v", err)
		return
	}
	for _, d := range append(slices.Clone(m.Layers), m.Config) {
		if _, err := os.Stat(s.blobPath(d.Digest)); err != nil {
			t.Errorf("blob %s of a named image: %v", d.Digest, err)
		}
	}
}

// RemoveTakes tells whether a removal takes away the name another ref
// resolves through: the same name, or any name of an image given by
// digest or ID; another name of the same image is not taken.
func TestRemoveTakes(t *testing.T) {
	s := newTestStore(t)
	a := mustImport(t, s, dockerArchive(t, helloImage(t, "a"), false, "a:1", "a:2"))[0]
	mustImport(t, s, dockerArchive(t, helloImage(t, "b"), false, "b:1"))
	for _, tc := range []struct {
		ref, other string
		want       bool
	}{
		{"a:1", "a:1", true},
		{"docker.io/library/a:1", "a:1", true},
		{"a:1", "a:2", false},
		{"a:1", "b:1", false},
		{a.ID, "a:2", true},
		{a.Digest, "a:1", true},
		{a.ID, "b:1", false},
		{"a:1", "missing:1", false},
	} {
		got, err := s.RemoveTakes(tc.ref, tc.other)
		if err != nil || got != tc.want {
			t.Errorf("RemoveTakes(%s, %s) = %v, %v; want %v", tc.ref, tc.other, got, err, tc.want)
		}
	}
	if imgs, _ := s.List(); len(imgs) != 3 {
		t.Errorf("RemoveTakes changed the store: %d images, want 3", len(imgs))
	}
}

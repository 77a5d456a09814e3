package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// stager collects the blobs of one import or pull under tmp/, verified, so that
// nothing reaches blobs/ before the whole archive has been read.
type stager struct {
	s       *Store
	dir     string
	release func()             // lets GC have dir again
	staged  map[v1.Hash]string // digest -> staged file
	order   []v1.Hash
	held    []string // stored blobs this import relies on, held against GC
}

func (s *Store) newStager() (*stager, error) {
	dir, release, err := s.tempDir("stage-")
	if err != nil {
		return nil, fmt.Errorf("create staging dir: %w", err)
	}
	return &stager{s: s, dir: dir, release: release, staged: map[v1.Hash]string{}}, nil
}

func (g *stager) cleanup() {
	os.RemoveAll(g.dir)
	g.release()
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	for _, rel := range g.held {
		g.s.unholdLocked(rel)
	}
}

// have reports whether h is already stored or staged, so its content need
// not be copied again. A stored blob is held until cleanup: garbage
// collection must not delete it between now and the commit that makes an
// image refer to it.
func (g *stager) have(h v1.Hash) bool {
	if _, ok := g.staged[h]; ok {
		return true
	}
	rel := blobRel(h)
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	if _, err := os.Stat(g.s.path(rel)); err != nil {
		return false
	}
	if !slices.Contains(g.held, rel) {
		g.s.holdLocked(rel)
		g.held = append(g.held, rel)
	}
	return true
}

// path returns where the content of h can be read during the import.
func (g *stager) path(h v1.Hash) string {
	if p, ok := g.staged[h]; ok {
		return p
	}
	return g.s.blobPath(h)
}

func (g *stager) addBytes(ctx context.Context, b []byte) (v1.Hash, error) {
	h, _, err := g.copyUnknown(ctx, bytes.NewReader(b))
	return h, err
}

func (g *stager) record(h v1.Hash, p string) {
	g.staged[h] = p
	g.order = append(g.order, h)
}

// copy stages r, which must have digest want and size wantSize (-1: any).
// It stops reading as soon as r holds more than wantSize bytes, so a blob
// that grows beyond what its manifest declares never fills the disk.
func (g *stager) copy(ctx context.Context, r io.Reader, want v1.Hash, wantSize int64) error {
	if g.have(want) {
		return nil
	}
	if wantSize >= 0 {
		r = &boundedReader{r: r, left: wantSize, err: func() error {
			return fmt.Errorf("blob %s: %w: more than the %d bytes declared for it", want, ErrOversized, wantSize)
		}}
	}
	got, size, err := g.copyUnknown(ctx, r)
	if err != nil {
		return err
	}
	if got != want || (wantSize >= 0 && size != wantSize) {
		g.drop(got)
		return fmt.Errorf("blob %s: content has digest %s and size %d, want size %d", want, got, size, wantSize)
	}
	return nil
}

// copyUnknown stages r and returns its digest and size.
func (g *stager) copyUnknown(ctx context.Context, r io.Reader) (v1.Hash, int64, error) {
	f, err := os.CreateTemp(g.dir, "blob-*")
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("stage blob: %w", err)
	}
	defer os.Remove(f.Name()) // no-op once renamed
	hw := sha256.New()
	size, err := io.Copy(io.MultiWriter(f, hw), ctxReader{ctx, r})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("stage blob: %w", err)
	}
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(hw.Sum(nil))}
	if g.have(h) {
		return h, size, nil
	}
	p := filepath.Join(g.dir, h.Hex)
	if err := os.Rename(f.Name(), p); err != nil {
		return v1.Hash{}, 0, fmt.Errorf("stage blob %s: %w", h, err)
	}
	g.record(h, p)
	return h, size, nil
}

func (g *stager) drop(h v1.Hash) {
	if p, ok := g.staged[h]; ok {
		os.Remove(p)
		delete(g.staged, h)
	}
}

// commit moves the staged blobs into the store and returns the ones it
// moved, so a failure after it (writing the index) can take them back.
// s.mu must be held, so garbage collection cannot race with it.
func (g *stager) commit() ([]string, error) {
	var moved []string
	for _, h := range g.order {
		src, ok := g.staged[h]
		if !ok {
			continue
		}
		dst := g.s.blobPath(h)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if err := os.Rename(src, dst); err != nil {
			removeAll(moved)
			return nil, fmt.Errorf("commit blob %s: %w", h, err)
		}
		moved = append(moved, dst)
	}
	if err := syncDir(g.s.path("blobs", "sha256")); err != nil {
		removeAll(moved)
		return nil, err
	}
	return moved, nil
}

func removeAll(paths []string) {
	for _, p := range paths {
		os.Remove(p)
	}
}

package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Rootfs returns the directory holding the unpacked root filesystem of the
// image named ref, and the image's run configuration. The directory is for
// read-only use (callers put an overlay on top of it). The layers are
// unpacked once per image ID: into a directory under tmp/, renamed into
// rootfs/ only when complete, so later calls, and calls after a crash, see
// either a whole rootfs or none.
func (s *Store) Rootfs(ctx context.Context, ref string) (string, RunConfig, error) {
	d, err := s.lookup(ref)
	if err != nil {
		return "", RunConfig{}, err
	}
	m, err := s.readManifest(d.Digest)
	if err != nil {
		return "", RunConfig{}, fmt.Errorf("rootfs of %s: %w", ref, err)
	}
	cfg, err := s.readConfig(m.Config.Digest)
	if err != nil {
		return "", RunConfig{}, fmt.Errorf("rootfs of %s: %w", ref, err)
	}
	rc := RunConfig{
		Entrypoint: cfg.Config.Entrypoint,
		Cmd:        cfg.Config.Cmd,
		Env:        cfg.Config.Env,
		WorkingDir: cfg.Config.WorkingDir,
		User:       cfg.Config.User,
	}
	dir := s.path("rootfs", m.Config.Digest.Hex)

	lock := s.unpackLock(m.Config.Digest.Hex)
	lock.Lock()
	defer lock.Unlock()
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return dir, rc, nil
	}
	if err := s.unpackImage(ctx, m, dir); err != nil {
		return "", RunConfig{}, fmt.Errorf("rootfs of %s: %w", ref, err)
	}
	return dir, rc, nil
}

func (s *Store) unpackLock(id string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.locks[id]
	if !ok {
		l = &sync.Mutex{}
		s.locks[id] = l
	}
	return l
}

// unpackImage applies m's layers in order into a fresh directory and renames
// it to dir.
func (s *Store) unpackImage(ctx context.Context, m *v1.Manifest, dir string) error {
	tmp, release, err := s.tempDir("rootfs-")
	if err != nil {
		return fmt.Errorf("create unpack dir: %w", err)
	}
	defer release()
	defer os.RemoveAll(tmp) // no-op once renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	b := &budget{limit: s.maxUnpacked}
	for _, l := range m.Layers {
		err := s.unpackBlob(ctx, tmp, l.Digest, b)
		if errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("%w: %s filled up while unpacking (%s of files so far): %w", ErrNoSpace, s.root, mib(b.used), err)
		}
		if err != nil {
			return err
		}
	}
	if err := syncFS(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("install rootfs %s: %w", dir, err)
	}
	s.log.Debug("unpacked image", "dir", dir, "layers", len(m.Layers))
	return syncDir(s.path("rootfs"))
}

func (s *Store) unpackBlob(ctx context.Context, root string, h v1.Hash, b *budget) error {
	f, err := os.Open(s.blobPath(h))
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", h, err)
	}
	defer f.Close()
	r, done, err := decompress(f)
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", h, err)
	}
	defer done()
	return applyLayer(ctx, root, h.String(), r, b, s.log)
}

package image

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// refNameAnnotation is the OCI annotation that names a manifest in index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// Config configures a Store.
type Config struct {
	// Root is the directory the store owns, e.g. DATA/images. It is created
	// when missing.
	Root string
	// Logger receives debug and warning records; nil discards them.
	Logger *slog.Logger
	// Platform selects the manifest taken from a multi-platform index at
	// import, as "os/arch[/variant]". Empty means linux/GOARCH.
	Platform string
	// MaxUnpacked bounds the size one image's files may add up to once
	// unpacked (the apparent size: a sparse file counts in full, as a
	// container reading or copying it sees it). Import and Pull refuse an
	// image over it, and unpacking stops at it. 0 means DefaultMaxUnpacked.
	MaxUnpacked int64
	// PullStall fails a pull when no byte has arrived from the registry
	// for this long. 0 means DefaultPullStall.
	PullStall time.Duration
}

// Image describes one named image in the store.
type Image struct {
	// Ref is the short familiar reference ("hello:1"), or the manifest
	// digest for an image its archive did not name.
	Ref string
	// Digest is the manifest digest, "sha256:...".
	Digest string
	// ID is the config digest, which is what Docker calls the image ID.
	ID string
	// Size is the stored size of the config and layers in bytes.
	Size int64
	// Platform is "os/arch[/variant]", e.g. "linux/arm/v7".
	Platform string
	// Created is the creation time recorded in the image config.
	Created time.Time
}

// RunConfig is the part of an image config that says how to run it.
type RunConfig struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
}

// Store is the node's image store. Its methods are safe for concurrent use.
type Store struct {
	root     string
	log      *slog.Logger
	platform v1.Platform
	// maxUnpacked and pullStall are Config's, defaults applied.
	maxUnpacked int64
	pullStall   time.Duration

	mu    sync.Mutex // guards the following, and every change under Root
	index v1.IndexManifest
	locks map[string]*sync.Mutex // per image ID, serialises unpacking
	// busy counts the operations in progress that use a path under Root
	// ("tmp/stage-123", "blobs/sha256/HEX"); GC and Remove leave such
	// paths alone even when no name refers to them.
	busy map[string]int
}

// New opens the store at cfg.Root, creating its layout when missing and
// removing leftovers of an interrupted import or unpack.
func New(cfg Config) (*Store, error) {
	if cfg.Root == "" {
		return nil, errors.New("image store: Config.Root is empty")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	plat, err := storePlatform(cfg.Platform)
	if err != nil {
		return nil, err
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("image store root %s: %w", cfg.Root, err)
	}
	if cfg.MaxUnpacked < 0 || cfg.PullStall < 0 {
		return nil, fmt.Errorf("image store: MaxUnpacked %d and PullStall %s must not be negative", cfg.MaxUnpacked, cfg.PullStall)
	}
	s := &Store{root: root, log: log, platform: plat, locks: map[string]*sync.Mutex{}, busy: map[string]int{},
		maxUnpacked: cmp.Or(cfg.MaxUnpacked, DefaultMaxUnpacked), pullStall: cmp.Or(cfg.PullStall, DefaultPullStall)}
	// tmp/ only ever holds work in progress; anything there now was
	// abandoned by a crash.
	if err := os.RemoveAll(s.path("tmp")); err != nil {
		return nil, fmt.Errorf("image store: clean %s: %w", s.path("tmp"), err)
	}
	for _, d := range []string{"blobs/sha256", "rootfs", "tmp"} {
		if err := os.MkdirAll(s.path(d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: create %s: %w", s.path(d), err)
		}
	}
	if _, err := os.Stat(s.path("oci-layout")); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(s.path("oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	if err := s.loadIndex(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

func (s *Store) blobPath(h v1.Hash) string {
	return s.path("blobs", h.Algorithm, h.Hex)
}

// List returns every named image, sorted by Ref.
func (s *Store) List() ([]Image, error) {
	s.mu.Lock()
	descs := slices.Clone(s.index.Manifests)
	s.mu.Unlock()
	imgs := make([]Image, 0, len(descs))
	for _, d := range descs {
		img, err := s.describe(d)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	slices.SortFunc(imgs, func(a, b Image) int { return cmp.Compare(a.Ref, b.Ref) })
	return imgs, nil
}

// Get returns the image named ref: a reference in any spelling ("hello:1",
// "docker.io/library/hello:1"), or a manifest digest or image ID
// ("sha256:..."). It returns an error wrapping ErrNotFound for unknown refs.
func (s *Store) Get(ref string) (Image, error) {
	d, err := s.lookup(ref)
	if err != nil {
		return Image{}, err
	}
	return s.describe(d)
}

// lookup finds the index descriptor for ref.
func (s *Store) lookup(ref string) (v1.Descriptor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := parseDigestRef(ref); ok {
		for _, d := range s.index.Manifests {
			if d.Digest == h {
				return d, nil
			}
		}
		// An image ID is the config digest, which only the manifests know.
		for _, d := range s.index.Manifests {
			if m, err := s.readManifest(d.Digest); err == nil && m.Config.Digest == h {
				return d, nil
			}
		}
		return v1.Descriptor{}, fmt.Errorf("image %s: %w", ref, ErrNotFound)
	}
	canon, err := canonicalRef(ref)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("image %s: %w: %w", ref, ErrNotFound, err)
	}
	for _, d := range s.index.Manifests {
		if d.Annotations[refNameAnnotation] == canon {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("image %s: %w", ref, ErrNotFound)
}

// describe builds the Image for an index descriptor from its stored
// manifest and config.
func (s *Store) describe(d v1.Descriptor) (Image, error) {
	m, err := s.readManifest(d.Digest)
	if err != nil {
		return Image{}, err
	}
	cfg, err := s.readConfig(m.Config.Digest)
	if err != nil {
		return Image{}, err
	}
	img := Image{
		Ref:      d.Digest.String(),
		Digest:   d.Digest.String(),
		ID:       m.Config.Digest.String(),
		Size:     m.Config.Size,
		Platform: cfg.Platform().String(),
		Created:  cfg.Created.Time,
	}
	if canon := d.Annotations[refNameAnnotation]; canon != "" {
		img.Ref = familiarRef(canon)
	}
	for _, l := range m.Layers {
		img.Size += l.Size
	}
	return img, nil
}

func (s *Store) readManifest(h v1.Hash) (*v1.Manifest, error) {
	f, err := os.Open(s.blobPath(h))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", h, err)
	}
	defer f.Close()
	m, err := v1.ParseManifest(f)
	if err != nil {
		return nil, fmt.Errorf("parse manifest %s: %w", h, err)
	}
	return m, nil
}

func (s *Store) readConfig(h v1.Hash) (*v1.ConfigFile, error) {
	f, err := os.Open(s.blobPath(h))
	if err != nil {
		return nil, fmt.Errorf("read image config %s: %w", h, err)
	}
	defer f.Close()
	c, err := v1.ParseConfigFile(f)
	if err != nil {
		return nil, fmt.Errorf("parse image config %s: %w", h, err)
	}
	return c, nil
}

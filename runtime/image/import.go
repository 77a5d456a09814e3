package image

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations that name a manifest in an OCI layout. containerd and buildx
// put the full name in their own annotation and only the tag in ref.name.
const containerdNameAnnotation = "io.containerd.image.name"

// imported is one manifest an archive provided, with the canonical refs it
// is to be known by (none: untagged).
type imported struct {
	refs []string
	desc v1.Descriptor
}

// Import loads a docker-archive or an OCI image-layout tarball, plain or
// gzip/zstd-compressed, from r and returns the images it stored, one per
// name (an unnamed image is returned under its manifest digest).
//
// r is spooled to a file under Root first, for random access; every blob is
// verified against its digest and staged before anything becomes visible,
// so a failed import leaves the store as it was. Importing content already
// present stores nothing new. An archive that does not fit in the free
// space is refused with ErrNoSpace, an image over Config.MaxUnpacked with
// ErrTooLarge (see Limits in the package doc).
func (s *Store) Import(ctx context.Context, r io.Reader) ([]Image, error) {
	f, release, err := s.spool(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("import image: %w", err)
	}
	defer release()
	defer os.Remove(f.Name())
	defer f.Close()
	a, err := openArchive(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("import image: %w", err)
	}
	g, err := s.newStager()
	if err != nil {
		return nil, fmt.Errorf("import image: %w", err)
	}
	defer g.cleanup()

	var items []imported
	switch {
	case a.has("manifest.json"):
		items, err = s.stageDockerArchive(ctx, a, g)
		if err != nil {
			return nil, fmt.Errorf("import docker-archive: %w", err)
		}
	case a.has("oci-layout") && a.has("index.json"):
		items, err = s.stageOCILayout(ctx, a, g)
		if err != nil {
			return nil, fmt.Errorf("import OCI layout: %w", err)
		}
	default:
		return nil, fmt.Errorf("import image: no manifest.json, nor oci-layout and index.json: %w", ErrUnknownFormat)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("import image: archive holds no image")
	}
	return s.commit(g, items)
}

// spool copies r, decompressed, into a temp file under tmp/; release lets
// GC have the file's name again.
func (s *Store) spool(ctx context.Context, r io.Reader) (_ *os.File, release func(), _ error) {
	f, release, err := s.tempFile("import-*.tar")
	if err != nil {
		return nil, nil, fmt.Errorf("spool archive: %w", err)
	}
	fail := func(err error) (*os.File, func(), error) {
		f.Close()
		os.Remove(f.Name())
		release()
		return nil, nil, fmt.Errorf("spool archive: %w", err)
	}
	src, done, err := decompress(ctxReader{ctx, r})
	if err != nil {
		return fail(err)
	}
	defer done()
	// A compressed archive's size is unknown until it is read: it may
	// take what the filesystem has free, and not a byte more.
	if free, ok := freeSpace(s.root); ok {
		src = &boundedReader{r: src, left: free, err: func() error {
			return fmt.Errorf("%w: the archive unpacks to more than the %s that %s has free", ErrNoSpace, mib(free), s.root)
		}}
	}
	if _, err := io.Copy(f, src); err != nil {
		return fail(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	return f, release, nil
}

// commit makes the staged import visible: blobs first, then the index.
func (s *Store) commit(g *stager, items []imported) ([]Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	moved, err := g.commit()
	if err != nil {
		return nil, fmt.Errorf("import image: %w", err)
	}
	next, changed := mergeIndex(s.index, items)
	if changed {
		if err := s.writeIndex(next); err != nil {
			removeAll(moved)
			return nil, fmt.Errorf("import image: %w", err)
		}
		s.index = next
	}
	var imgs []Image
	for _, it := range items {
		refs := it.refs
		if len(refs) == 0 {
			refs = []string{""}
		}
		for _, ref := range refs {
			d := it.desc
			if ref != "" {
				d.Annotations = map[string]string{refNameAnnotation: ref}
			}
			img, err := s.describe(d)
			if err != nil {
				return nil, fmt.Errorf("import image: %w", err)
			}
			imgs = append(imgs, img)
			s.log.Debug("imported image", "ref", img.Ref, "digest", img.Digest)
		}
	}
	return imgs, nil
}

// mergeIndex adds the imported names to idx: a name moves to its new
// manifest, and an unnamed manifest is listed only when nothing else
// lists it.
func mergeIndex(idx v1.IndexManifest, items []imported) (v1.IndexManifest, bool) {
	next := idx
	next.Manifests = slices.Clone(idx.Manifests)
	changed := false
	for _, it := range items {
		for _, ref := range it.refs {
			i := slices.IndexFunc(next.Manifests, func(d v1.Descriptor) bool { return d.Annotations[refNameAnnotation] == ref })
			if i >= 0 && next.Manifests[i].Digest == it.desc.Digest {
				continue
			}
			if i >= 0 {
				next.Manifests = slices.Delete(next.Manifests, i, i+1)
			}
			d := it.desc
			d.Annotations = map[string]string{refNameAnnotation: ref}
			next.Manifests = append(next.Manifests, d)
			changed = true
		}
		if len(it.refs) > 0 {
			// A manifest that was known only by digest now has a name.
			n := len(next.Manifests)
			next.Manifests = slices.DeleteFunc(next.Manifests, func(d v1.Descriptor) bool {
				return d.Digest == it.desc.Digest && d.Annotations[refNameAnnotation] == ""
			})
			changed = changed || n != len(next.Manifests)
			continue
		}
		if !slices.ContainsFunc(next.Manifests, func(d v1.Descriptor) bool { return d.Digest == it.desc.Digest }) {
			next.Manifests = append(next.Manifests, it.desc)
			changed = true
		}
	}
	return next, changed
}

// dockerManifest is one entry of a docker-archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// stageDockerArchive stages the images of a docker-archive. Such an archive
// carries no registry manifest, so one is built: an OCI manifest over the
// layers exactly as archived (plain layers stay plain, which spares edge
// devices a recompression), verified against the config's diff_ids.
func (s *Store) stageDockerArchive(ctx context.Context, a *archive, g *stager) ([]imported, error) {
	raw, err := a.readAll("manifest.json")
	if err != nil {
		return nil, err
	}
	var dms []dockerManifest
	if err := json.Unmarshal(raw, &dms); err != nil {
		return nil, fmt.Errorf("parse manifest.json: %w", err)
	}
	var items []imported
	for _, dm := range dms {
		desc, err := s.stageDockerImage(ctx, a, g, dm)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", cmp.Or(strings.Join(dm.RepoTags, ", "), dm.Config), err)
		}
		it := imported{desc: desc}
		for _, tag := range dm.RepoTags {
			ref, err := canonicalRef(tag)
			if err != nil {
				return nil, err
			}
			it.refs = append(it.refs, ref)
		}
		items = append(items, it)
	}
	return items, nil
}

func (s *Store) stageDockerImage(ctx context.Context, a *archive, g *stager, dm dockerManifest) (v1.Descriptor, error) {
	rawCfg, err := a.readAll(dm.Config)
	if err != nil {
		return v1.Descriptor{}, err
	}
	cfg, err := v1.ParseConfigFile(strings.NewReader(string(rawCfg)))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("parse config %s: %w", dm.Config, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(dm.Layers) {
		return v1.Descriptor{}, fmt.Errorf("config %s lists %d diff_ids for %d layers", dm.Config, len(cfg.RootFS.DiffIDs), len(dm.Layers))
	}
	if err := checkDockerSpace(a, g, dm.Layers, cfg.RootFS.DiffIDs); err != nil {
		return v1.Descriptor{}, err
	}
	cfgDigest, err := g.addBytes(ctx, rawCfg)
	if err != nil {
		return v1.Descriptor{}, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(rawCfg)), Digest: cfgDigest},
	}
	var digests []v1.Hash
	for i, name := range dm.Layers {
		l, err := stageDockerLayer(ctx, a, g, name, cfg.RootFS.DiffIDs[i])
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("layer %s: %w", name, err)
		}
		m.Layers = append(m.Layers, l)
		digests = append(digests, l.Digest)
	}
	if err := g.checkLayers(ctx, digests, cfg.RootFS.DiffIDs); err != nil {
		return v1.Descriptor{}, err
	}
	rawM, err := json.Marshal(m)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("encode manifest: %w", err)
	}
	mDigest, err := g.addBytes(ctx, rawM)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{
		MediaType: types.OCIManifestSchema1,
		Size:      int64(len(rawM)),
		Digest:    mDigest,
		Platform:  cfg.Platform(),
	}, nil
}

func stageDockerLayer(ctx context.Context, a *archive, g *stager, name string, diffID v1.Hash) (v1.Descriptor, error) {
	sr, err := a.open(name)
	if err != nil {
		return v1.Descriptor{}, err
	}
	head := make([]byte, 4)
	n, _ := sr.ReadAt(head, 0)
	c := sniff(head[:n])
	if c == uncompressed {
		// The blob is the diff itself, so its digest must be the diff_id.
		if err := g.copy(ctx, sr, diffID, sr.Size()); err != nil {
			return v1.Descriptor{}, err
		}
		return v1.Descriptor{MediaType: types.OCIUncompressedLayer, Size: sr.Size(), Digest: diffID}, nil
	}
	// Its diff_id is checked with the image's other layers (checkLayers).
	h, size, err := g.copyUnknown(ctx, sr)
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt := types.OCILayer
	if c == zstded {
		mt = types.OCILayerZStd
	}
	return v1.Descriptor{MediaType: mt, Size: size, Digest: h}, nil
}

// checkDockerSpace refuses to stage the layers of a docker-archive image
// when the store's filesystem cannot hold them. A plain layer whose
// diff_id is stored already is not copied again; a compressed one is known
// by its digest only once read, so it counts.
func checkDockerSpace(a *archive, g *stager, layers []string, diffIDs []v1.Hash) error {
	var need int64
	seen := map[string]bool{}
	for i, name := range layers {
		sr, err := a.open(name)
		if err != nil {
			return fmt.Errorf("layer %s: %w", name, err)
		}
		if seen[name] || (i < len(diffIDs) && g.have(diffIDs[i])) {
			continue
		}
		seen[name] = true
		need += sr.Size()
	}
	return g.s.checkSpace(need)
}

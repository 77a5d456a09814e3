package image

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// maxIndexDepth bounds nested image indexes, so a cyclic or absurd archive
// ends with an error instead of recursing forever.
const maxIndexDepth = 4

// stageOCILayout stages the images listed in an OCI layout's index.json.
func (s *Store) stageOCILayout(ctx context.Context, a *archive, g *stager) ([]imported, error) {
	raw, err := a.readAll("index.json")
	if err != nil {
		return nil, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse index.json: %w", err)
	}
	var items []imported
	for _, d := range idx.Manifests {
		ref, err := ociRef(d.Annotations)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		desc, err := s.stageOCIManifest(ctx, a, g, d, 0)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", cmp.Or(ociName(d.Annotations), d.Digest.String()), err)
		}
		it := imported{desc: desc}
		if ref != "" {
			it.refs = []string{ref}
		}
		items = append(items, it)
	}
	return items, nil
}

// ociRef returns the canonical name an index descriptor gives its image, or
// "" when it gives none. A bare ref.name such as "1" (skopeo's oci:DIR:1) is
// read as an image name, as name.ParseReference reads it.
func ociRef(ann map[string]string) (string, error) {
	n := ociName(ann)
	if n == "" {
		return "", nil
	}
	return canonicalRef(n)
}

// ociName is the name an index descriptor gives its image, as written.
func ociName(ann map[string]string) string {
	return cmp.Or(ann[containerdNameAnnotation], ann[refNameAnnotation])
}

// stageOCIManifest stages the image d describes; for an index, the image
// for the store's platform. It returns the descriptor of the stored manifest.
func (s *Store) stageOCIManifest(ctx context.Context, a *archive, g *stager, d v1.Descriptor, depth int) (v1.Descriptor, error) {
	raw, err := a.readBlob(d)
	if err != nil {
		return v1.Descriptor{}, err
	}
	switch {
	case d.MediaType.IsIndex():
		if depth >= maxIndexDepth {
			return v1.Descriptor{}, fmt.Errorf("index %s: nested more than %d deep", d.Digest, maxIndexDepth)
		}
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("parse index %s: %w", d.Digest, err)
		}
		child, err := pickPlatform(idx.Manifests, s.platform)
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("index %s: %w", d.Digest, err)
		}
		return s.stageOCIManifest(ctx, a, g, child, depth+1)
	case d.MediaType.IsImage():
	default:
		return v1.Descriptor{}, fmt.Errorf("unsupported media type %q", d.MediaType)
	}

	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("parse manifest %s: %w", d.Digest, err)
	}
	rawCfg, err := a.readBlob(m.Config)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("config: %w", err)
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(rawCfg, &cfg); err != nil {
		return v1.Descriptor{}, fmt.Errorf("parse config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return v1.Descriptor{}, fmt.Errorf("config %s lists %d diff_ids for %d layers", m.Config.Digest, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	var need int64
	var digests []v1.Hash
	for _, l := range m.Layers {
		if !g.have(l.Digest) && !slices.Contains(digests, l.Digest) {
			need += l.Size
		}
		digests = append(digests, l.Digest)
	}
	if err := s.checkSpace(need); err != nil {
		return v1.Descriptor{}, err
	}
	if _, err := g.addBytes(ctx, rawCfg); err != nil {
		return v1.Descriptor{}, err
	}
	for _, l := range m.Layers {
		if !l.MediaType.IsLayer() {
			return v1.Descriptor{}, fmt.Errorf("layer %s: unsupported media type %q", l.Digest, l.MediaType)
		}
		sr, err := a.open(blobName(l.Digest))
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		if err := g.copy(ctx, sr, l.Digest, l.Size); err != nil {
			return v1.Descriptor{}, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
	}
	if err := g.checkLayers(ctx, digests, cfg.RootFS.DiffIDs); err != nil {
		return v1.Descriptor{}, err
	}
	if _, err := g.addBytes(ctx, raw); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: d.MediaType, Size: d.Size, Digest: d.Digest, Platform: cfg.Platform()}, nil
}

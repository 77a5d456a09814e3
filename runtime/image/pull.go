package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PullOptions tune one Pull. The zero value pulls anonymously (or with the
// default docker config.json's credentials) over verified HTTPS, for the
// store's platform.
type PullOptions struct {
	// Insecure allows plain HTTP and HTTPS without certificate verification
	// for this registry. Loopback registries (localhost, 127.0.0.0/8, ::1)
	// may use plain HTTP without it; every other registry must speak
	// verified HTTPS unless Insecure is set.
	Insecure bool
	// Username and Password are basic credentials for the registry (also
	// used to obtain a bearer token when the registry wants one). When both
	// are empty, credentials come from DockerConfig.
	Username, Password string
	// DockerConfig is the path of a docker config.json whose "auths" entry
	// for the registry gives the credentials ("auth", or "username" and
	// "password", or "identitytoken"). Empty means
	// $DOCKER_CONFIG/config.json, else ~/.docker/config.json, if present.
	// Credential helpers (credsStore, credHelpers) are not run.
	DockerConfig string
	// Platform selects the image from a multi-platform index, as
	// "os/arch[/variant]"; empty means the store's Config.Platform. See
	// platform.go for the matching rule.
	Platform string
	// Progress, when set, is called on Pull's goroutine as layer bytes
	// arrive, with the bytes received so far and the total size of the
	// layers to download. Layers already in the store are not downloaded
	// and not counted. It is called with done == 0 before the first layer
	// and with done == total when the last has arrived; done never
	// decreases. It should return quickly.
	Progress func(done, total int64)
}

// Pull fetches the image ref ("app:1", "registry.local:5000/app@sha256:...")
// from its registry into the store and names it ref; for a multi-platform
// index, the image for opts.Platform. It returns the stored image. A digest
// reference keeps naming the image by that digest even when it is the
// index's; Image.Digest is the platform manifest's.
//
// Blobs go through the same staging as Import: each is verified against its
// digest and size under tmp/, and the blobs and the name become visible
// together only when everything has arrived. A failed or cancelled pull
// leaves the store as it was; a blob already in the store is not
// downloaded again.
//
// Errors wrap ErrUnauthorized (401/403: the message says how to give
// credentials), ErrManifestUnknown (no such repository, tag or digest),
// ErrUnreachable (unknown host, connection refused), ErrNoPlatform (the
// message names the platforms on offer), ErrNoSpace (the layers do not fit
// in the free space; nothing was downloaded), ErrTooLarge (over
// Config.MaxUnpacked), ErrOversized (a manifest over 4 MiB, a blob beyond
// its declared size), ErrStalled (nothing arrived for Config.PullStall),
// or the context's error when ctx ends first.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (Image, error) {
	img, err := s.pull(ctx, ref, opts)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	return img, nil
}

func (s *Store) pull(ctx context.Context, ref string, opts PullOptions) (Image, error) {
	want := s.platform
	if opts.Platform != "" {
		p, err := parsePlatform(opts.Platform)
		if err != nil {
			return Image{}, err
		}
		want = p
	}
	r, err := parseRemoteRef(ref, opts.Insecure)
	if err != nil {
		return Image{}, err
	}
	reg := r.Context().Registry
	auth, err := opts.authenticator(reg)
	if err != nil {
		return Image{}, err
	}
	watch, ctx, stop := newStallWatch(ctx, r.Context().RegistryStr(), s.pullStall)
	defer stop()
	tr := newPullTransport(opts.Insecure, watch)
	defer tr.CloseIdleConnections()
	puller, err := remote.NewPuller(remote.WithAuth(auth.Authenticator), remote.WithTransport(tr), remote.WithUserAgent("shoal"))
	if err != nil {
		return Image{}, err
	}
	g, err := s.newStager()
	if err != nil {
		return Image{}, err
	}
	defer g.cleanup()

	p := &pullJob{ctx: ctx, name: ref, puller: puller, repo: r.Context(), g: g, want: want, progress: opts.Progress}
	desc, err := p.stage(r)
	if err != nil {
		return Image{}, explainPullError(ctx, r, auth, err)
	}
	imgs, err := s.commit(g, []imported{{refs: []string{r.Name()}, desc: desc}})
	if err != nil {
		return Image{}, err
	}
	return imgs[0], nil
}

// parseRemoteRef parses ref for fetching: a loopback registry, or any with
// insecure, may then be reached over plain HTTP (pullTransport enforces
// that nothing else is).
func parseRemoteRef(ref string, insecure bool) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("parse image reference %q: %w", ref, err)
	}
	if insecure || isLoopbackHost(r.Context().RegistryStr()) {
		if r, err = name.ParseReference(ref, name.Insecure); err != nil {
			return nil, fmt.Errorf("parse image reference %q: %w", ref, err)
		}
	}
	return r, nil
}

// pullJob is one Pull's fetching and staging.
type pullJob struct {
	ctx      context.Context
	name     string // the reference asked for, for messages
	puller   *remote.Puller
	repo     name.Repository
	g        *stager
	want     v1.Platform
	progress func(done, total int64)
}

// stage fetches the manifest r names (through indexes, down to the image
// for p.want), its config and its layers into the stager, and returns the
// descriptor of the image manifest to index.
func (p *pullJob) stage(r name.Reference) (v1.Descriptor, error) {
	fromIndex := false
	for depth := 0; ; depth++ {
		raw, mt, h, err := p.fetchManifest(r)
		if err != nil {
			return v1.Descriptor{}, err
		}
		switch {
		case mt.IsIndex():
			if depth >= maxIndexDepth {
				return v1.Descriptor{}, fmt.Errorf("index %s: nested more than %d deep", h, maxIndexDepth)
			}
			idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
			if err != nil {
				return v1.Descriptor{}, fmt.Errorf("parse index %s: %w", h, err)
			}
			child, err := pickPlatform(idx.Manifests, p.want)
			if err != nil {
				return v1.Descriptor{}, fmt.Errorf("index %s: %w", h, err)
			}
			r, fromIndex = p.repo.Digest(child.Digest.String()), true
		case mt.IsImage():
			return p.stageImage(raw, mt, h, fromIndex)
		case mt.IsSchema1():
			return v1.Descriptor{}, fmt.Errorf("manifest %s: Docker schema 1 manifests are not supported; push the image again with a current tool", h)
		default:
			return v1.Descriptor{}, fmt.Errorf("manifest %s: unsupported media type %q", h, mt)
		}
	}
}

// fetchManifest gets a manifest or index and its media type, taken from
// the document itself when the registry's Content-Type says nothing useful.
// By-digest fetches are verified by remote; the digest returned is of the
// bytes received.
func (p *pullJob) fetchManifest(r name.Reference) ([]byte, types.MediaType, v1.Hash, error) {
	d, err := p.puller.Get(p.ctx, r)
	if err != nil {
		return nil, "", v1.Hash{}, err
	}
	raw := d.Manifest
	if len(raw) > maxManifestSize {
		return nil, "", v1.Hash{}, fmt.Errorf("manifest %s: %w: %d bytes is more than %d", r, ErrOversized, len(raw), maxManifestSize)
	}
	h := digestOf(raw)
	if dr, ok := r.(name.Digest); ok && dr.DigestStr() != h.String() {
		return nil, "", v1.Hash{}, fmt.Errorf("manifest %s: content has digest %s", r, h)
	}
	mt := d.MediaType
	if !mt.IsIndex() && !mt.IsImage() && !mt.IsSchema1() {
		var doc struct {
			MediaType types.MediaType `json:"mediaType"`
		}
		if json.Unmarshal(raw, &doc) == nil && doc.MediaType != "" {
			mt = doc.MediaType
		}
	}
	return raw, mt, h, nil
}

// stageImage stages an image manifest's config and layers, then the
// manifest itself. A manifest not chosen from an index must still be for
// the wanted platform.
func (p *pullJob) stageImage(raw []byte, mt types.MediaType, h v1.Hash, fromIndex bool) (v1.Descriptor, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("parse manifest %s: %w", h, err)
	}
	if !m.Config.MediaType.IsConfig() {
		return v1.Descriptor{}, fmt.Errorf("manifest %s: config media type %q: not a container image", h, m.Config.MediaType)
	}
	if m.Config.Size > maxJSONSize {
		return v1.Descriptor{}, fmt.Errorf("config %s: %w: %d bytes is more than %d", m.Config.Digest, ErrOversized, m.Config.Size, maxJSONSize)
	}
	var need int64
	var digests []v1.Hash
	for _, l := range m.Layers {
		if !l.MediaType.IsLayer() || !l.MediaType.IsDistributable() {
			return v1.Descriptor{}, fmt.Errorf("layer %s: unsupported media type %q", l.Digest, l.MediaType)
		}
		if l.Size < 0 {
			return v1.Descriptor{}, fmt.Errorf("layer %s: size %d", l.Digest, l.Size)
		}
		if !p.g.have(l.Digest) && !slices.Contains(digests, l.Digest) {
			need += l.Size
		}
		digests = append(digests, l.Digest)
	}
	if !p.g.have(m.Config.Digest) {
		need += m.Config.Size
	}
	// What the manifest declares is all a registry may send (fetchBlob
	// reads no more), so a pull that cannot fit is refused before a byte.
	if err := p.g.s.checkSpace(need); err != nil {
		return v1.Descriptor{}, err
	}
	if err := p.fetchBlob(m.Config, nil); err != nil {
		return v1.Descriptor{}, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	cfg, err := readConfigFile(p.g.path(m.Config.Digest))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return v1.Descriptor{}, fmt.Errorf("config %s lists %d diff_ids for %d layers", m.Config.Digest, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	if have := cfg.Platform(); !fromIndex && have != nil && have.Architecture != "" && platformRank(p.want, *have) < 0 {
		return v1.Descriptor{}, fmt.Errorf("%w %s; available: %s", ErrNoPlatform, p.want.String(), have.String())
	}
	if err := p.fetchLayers(m.Layers); err != nil {
		return v1.Descriptor{}, err
	}
	if err := p.g.checkLayers(p.ctx, digests, cfg.RootFS.DiffIDs); err != nil {
		return v1.Descriptor{}, err
	}
	if _, err := p.g.addBytes(p.ctx, raw); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: int64(len(raw)), Digest: h, Platform: cfg.Platform()}, nil
}

// fetchLayers downloads the layers the store lacks, each once, reporting
// progress over their total size.
func (p *pullJob) fetchLayers(layers []v1.Descriptor) error {
	var missing []v1.Descriptor
	var total int64
	for _, l := range layers {
		if p.g.have(l.Digest) || containsDigest(missing, l.Digest) {
			continue
		}
		missing = append(missing, l)
		total += l.Size
	}
	var done int64
	report := func(n int64) {
		done += n
		if p.progress != nil {
			p.progress(done, total)
		}
	}
	report(0)
	for _, l := range missing {
		if err := p.fetchBlob(l, report); err != nil {
			return fmt.Errorf("layer %s: %w", l.Digest, err)
		}
	}
	return nil
}

func containsDigest(ds []v1.Descriptor, h v1.Hash) bool {
	for _, d := range ds {
		if d.Digest == h {
			return true
		}
	}
	return false
}

// fetchBlob stages the blob d unless the store has it, reading at most
// d.Size+1 bytes so a registry cannot stream without end; the stager checks
// size and digest.
func (p *pullJob) fetchBlob(d v1.Descriptor, report func(int64)) error {
	if p.g.have(d.Digest) {
		return nil
	}
	l, err := p.puller.Layer(p.ctx, p.repo.Digest(d.Digest.String()))
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	var r io.Reader = io.LimitReader(rc, d.Size+1)
	if report != nil {
		r = &countingReport{r: r, report: report}
	}
	return p.g.copy(p.ctx, r, d.Digest, d.Size)
}

// countingReport passes the size of every read to report.
type countingReport struct {
	r      io.Reader
	report func(int64)
}

func (c *countingReport) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.report(int64(n))
	}
	return n, err
}

func readConfigFile(path string) (*v1.ConfigFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return v1.ParseConfigFile(f)
}

package image

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// budget counts the bytes an image's files take, across its layers,
// against the most one image may unpack to.
type budget struct{ limit, used int64 }

// take counts the n bytes of entry name, or refuses them.
func (b *budget) take(name string, n int64) error {
	if n < 0 || n > b.limit-b.used {
		return fmt.Errorf("%w: it unpacks to more than %s, the limit for one image (entry %q holds %s, after %s of other files)",
			ErrTooLarge, mib(b.limit), name, mib(n), mib(b.used))
	}
	b.used += n
	return nil
}

// checkLayers reads the staged layers of an image, decompressed,
// as the unpacker will, before anything is stored: each must have the
// diff_id its config promises, and the files of all of them together must
// stay within the store's MaxUnpacked. A 20 KB layer holding a sparse
// 100 GiB file, or a few MB of gzip that expand to gigabytes, is refused
// here, while it costs nothing but reading.
func (g *stager) checkLayers(ctx context.Context, layers, diffIDs []v1.Hash) error {
	if len(layers) != len(diffIDs) {
		return fmt.Errorf("%d layers for %d diff_ids", len(layers), len(diffIDs))
	}
	b := &budget{limit: g.s.maxUnpacked}
	for i, h := range layers {
		if err := g.checkLayer(ctx, h, diffIDs[i], b); err != nil {
			return err
		}
	}
	return nil
}

// checkLayer verifies one layer's diff_id and counts its files against b,
// failing as soon as a header passes the limit.
func (g *stager) checkLayer(ctx context.Context, h, diffID v1.Hash, b *budget) error {
	f, err := os.Open(g.path(h))
	if err != nil {
		return fmt.Errorf("layer %s: %w", h, err)
	}
	defer f.Close()
	r, done, err := decompress(ctxReader{ctx, f})
	if err != nil {
		return fmt.Errorf("layer %s: %w", h, err)
	}
	defer done()
	hw := sha256.New()
	tee := io.TeeReader(r, hw)
	if err := countFiles(tar.NewReader(tee), b); err != nil {
		return fmt.Errorf("layer %s: %w", h, err)
	}
	// What follows the tar's end marker is part of the diff_id too.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return fmt.Errorf("layer %s: decompress: %w", h, err)
	}
	if got := hex.EncodeToString(hw.Sum(nil)); got != diffID.Hex {
		return fmt.Errorf("layer %s: uncompressed digest sha256:%s, config says %s", h, got, diffID)
	}
	return nil
}

// countFiles counts the regular files of tr against b.
func countFiles(tr *tar.Reader, b *budget) error {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeGNUSparse {
			continue
		}
		if err := b.take(hdr.Name, hdr.Size); err != nil {
			return err
		}
	}
}

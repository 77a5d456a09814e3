package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// maxJSONSize bounds manifests, configs and indexes read into memory, so a
// hostile archive cannot make the node allocate without limit.
const maxJSONSize = 8 << 20

// compression is what a stream's first bytes say it is.
type compression int

const (
	uncompressed compression = iota
	gzipped
	zstded
)

func sniff(head []byte) compression {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return gzipped
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return zstded
	}
	return uncompressed
}

// decompress returns a reader of r's content with gzip or zstd compression
// removed, detected from the first bytes; close releases the decoder.
func decompress(r io.Reader) (out io.Reader, close func(), err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(4) // a short stream is simply not compressed
	switch sniff(head) {
	case gzipped:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case zstded:
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// ctxReader stops a long copy when its context is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// archive gives random access to the regular files of a spooled, plain tar:
// it records where each member's data starts instead of extracting it.
type archive struct {
	f       *os.File
	members map[string]member
}

type member struct{ off, size int64 }

// countingReader tracks the offset archive/tar has consumed. tar.Reader reads
// exactly the header blocks before returning from Next, so the count then is
// the offset of the entry's data.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func openArchive(ctx context.Context, f *os.File) (*archive, error) {
	cr := &countingReader{r: ctxReader{ctx, f}}
	tr := tar.NewReader(cr)
	a := &archive{f: f, members: map[string]member{}}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read archive after %d entries: %w", len(a.members), err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		a.members[cleanMember(hdr.Name)] = member{off: cr.n, size: hdr.Size}
	}
	// A tar cut at an entry boundary reads as complete; the last member's
	// data must at least be all there.
	if fi, err := f.Stat(); err == nil {
		for n, m := range a.members {
			if m.off+m.size > fi.Size() {
				return nil, fmt.Errorf("read archive: member %s: %w", n, io.ErrUnexpectedEOF)
			}
		}
	}
	return a, nil
}

func cleanMember(n string) string {
	return strings.TrimPrefix(path.Clean("/"+n), "/")
}

func (a *archive) has(name string) bool {
	_, ok := a.members[name]
	return ok
}

func (a *archive) open(name string) (*io.SectionReader, error) {
	m, ok := a.members[cleanMember(name)]
	if !ok {
		return nil, fmt.Errorf("archive member %s: missing", name)
	}
	return io.NewSectionReader(a.f, m.off, m.size), nil
}

// readAll reads a small member (JSON) into memory.
func (a *archive) readAll(name string) ([]byte, error) {
	sr, err := a.open(name)
	if err != nil {
		return nil, err
	}
	if sr.Size() > maxJSONSize {
		return nil, fmt.Errorf("archive member %s: %d bytes is more than %d", name, sr.Size(), maxJSONSize)
	}
	b, err := io.ReadAll(sr)
	if err != nil {
		return nil, fmt.Errorf("archive member %s: %w", name, err)
	}
	return b, nil
}

// blobName is where an OCI image layout keeps the blob h.
func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// readBlob reads a small blob of an OCI layout and checks its digest.
func (a *archive) readBlob(d v1.Descriptor) ([]byte, error) {
	if d.Size > maxJSONSize {
		return nil, fmt.Errorf("blob %s: %d bytes is more than %d", d.Digest, d.Size, maxJSONSize)
	}
	b, err := a.readAll(blobName(d.Digest))
	if err != nil {
		return nil, err
	}
	if got := digestOf(b); got != d.Digest || int64(len(b)) != d.Size {
		return nil, fmt.Errorf("blob %s: content has digest %s and size %d, want size %d", d.Digest, got, len(b), d.Size)
	}
	return b, nil
}

func digestOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

package image

import (
	"fmt"
	"io"
	"time"
)

// Limits on what one image may take of a node. A registry or an archive
// says how big things are; these bound what shoal believes.
const (
	// DefaultMaxUnpacked is Config.MaxUnpacked when it is 0: the most one
	// image's files may add up to once unpacked.
	DefaultMaxUnpacked int64 = 8 << 30
	// DefaultPullStall is Config.PullStall when it is 0.
	DefaultPullStall = time.Minute
	// maxManifestSize bounds a manifest or index, as registries do.
	maxManifestSize = 4 << 20
	// maxRedirects bounds the redirects one registry request follows, as
	// Go's own HTTP client does by default.
	maxRedirects = 10
)

// mib formats n bytes as whole MiB, rounded up so that a few bytes do not
// read as 0.
func mib(n int64) string {
	return fmt.Sprintf("%d MiB", (n+(1<<20)-1)>>20)
}

// checkSpace refuses an image that needs need bytes under the store's
// root when the filesystem has fewer free, before anything is written.
func (s *Store) checkSpace(need int64) error {
	free, ok := freeSpace(s.root)
	if !ok || need <= free {
		return nil
	}
	return fmt.Errorf("%w: the image needs %s, %s has %s free", ErrNoSpace, mib(need), s.root, mib(free))
}

// boundedReader reads at most max bytes of r and fails with err, rather
// than returning io.EOF, when r holds more.
type boundedReader struct {
	r    io.Reader
	left int64
	err  func() error
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a stream of exactly max bytes from a longer one.
		var one [1]byte
		for {
			n, err := b.r.Read(one[:])
			if n > 0 {
				return 0, b.err()
			}
			if err != nil {
				return 0, err
			}
		}
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

//go:build linux

package image

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/shoal-edge/shoal/internal/imagebuild"
	"github.com/shoal-edge/shoal/internal/testutil"
	"golang.org/x/sys/unix"
)

// layersArchive is a docker-archive "hostile:1" of the given layers.
func layersArchive(t testing.TB, layers ...[]byte) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "archive.tar")
	if err := imagebuild.WriteLayersArchive(p, "hostile:1", layers...); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sparseLayer(t testing.TB, size int64) []byte {
	t.Helper()
	l, err := imagebuild.SparseLayer("big", size, []byte("end"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// An image whose files add up to more than MaxUnpacked is refused at
// import, however small its archive, and nothing of it stays.
func TestImportRefusesImagesOverTheUnpackLimit(t *testing.T) {
	zeros, err := imagebuild.ZerosLayer(1024, 1<<20) // 1 GiB in about 1 MB
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		archive []byte
	}{
		{"sparse 100 GiB file", layersArchive(t, sparseLayer(t, 100<<30))},
		{"gzip that expands to 1 GiB", layersArchive(t, zeros)},
		{"layers that add up", layersArchive(t, sparseLayer(t, 40<<20), sparseLayer(t, 40<<20))},
		{"OCI layout with a sparse 100 GiB file", ociArchive(t, testImage(t, v1.Config{}, sparseLayer(t, 100<<30)), "hostile:1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.archive) > 2<<20 {
				t.Fatalf("archive is %d bytes", len(tt.archive))
			}
			s, err := New(Config{Root: filepath.Join(t.TempDir(), "images"), MaxUnpacked: 64 << 20})
			if err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, s.root)
			_, err = s.Import(context.Background(), bytes.NewReader(tt.archive))
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "image hostile:1:") || !strings.Contains(err.Error(), "more than 64 MiB") {
				t.Fatalf("Import = %v, want ErrTooLarge naming the image and the 64 MiB limit", err)
			}
			t.Log(err)
			if diff := cmp.Diff(before, snapshot(t, s.root)); diff != "" {
				t.Errorf("store changed (-before +after):\n%s", diff)
			}
		})
	}
}

// A store whose limit is lower than an image it already holds stops
// unpacking it at the limit, leaving no partial rootfs; a sparse file
// within the limit is unpacked sparse.
func TestRootfsStopsAtTheUnpackLimit(t *testing.T) {
	root := filepath.Join(t.TempDir(), "images")
	s, err := New(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	mustImport(t, s, layersArchive(t, sparseLayer(t, 512<<20)))
	blobs := blobNames(t, s)

	small, err := New(Config{Root: root, MaxUnpacked: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := small.Rootfs(context.Background(), "hostile:1"); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Rootfs over the limit = %v, want ErrTooLarge", err)
	}
	checkNothingLeft(t, small, blobs)

	dir, _, err := s.Rootfs(context.Background(), "hostile:1")
	if err != nil {
		t.Fatal(err)
	}
	checkSparse(t, filepath.Join(dir, "big"), 512<<20)
}

// checkSparse fails t unless p is a file of size bytes that ends in "end"
// and takes almost no disk.
func checkSparse(t testing.TB, p string, size int64) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size || st.Blocks*512 > 64<<10 {
		t.Errorf("%s: size %d taking %d bytes on disk, want %d taking at most 64 KiB", p, st.Size, st.Blocks*512, size)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tail := make([]byte, 3)
	if _, err := f.ReadAt(tail, size-3); err != nil || string(tail) != "end" {
		t.Errorf("%s ends in %q, %v", p, tail, err)
	}
}

// A blob that holds more than declared is not read past its size.
func TestStageStopsAtTheDeclaredSize(t *testing.T) {
	s := newTestStore(t)
	g, err := s.newStager()
	if err != nil {
		t.Fatal(err)
	}
	defer g.cleanup()
	src := &countingReader{r: io.LimitReader(zeroReader{}, 256<<20)}
	want := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}
	err = g.copy(context.Background(), src, want, 1024)
	if !errors.Is(err, ErrOversized) || src.n > 1024+64<<10 {
		t.Fatalf("copy of an endless blob declared 1024 bytes = %v after reading %d bytes, want ErrOversized within 64 KiB", err, src.n)
	}
	if ents, _ := os.ReadDir(g.dir); len(ents) != 0 {
		t.Errorf("staged after the failure: %v", ents)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// tmpfsStore is a store on a tmpfs of the given size ("32m") that the test
// mounts and unmounts.
func tmpfsStore(t *testing.T, size string) *Store {
	t.Helper()
	dir := t.TempDir()
	testutil.MountTmpfs(t, dir, "size="+size)
	s, err := New(Config{Root: filepath.Join(dir, "images")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// An import that does not fit in the store's filesystem is refused with
// the space it needs and has, and leaves the filesystem as it was.
func TestImportRefusedWhenTheDiskIsFull(t *testing.T) {
	noisy := makeTar(t, tarEntry{name: "noise", body: noise(7, 20<<20)})
	zeros, err := imagebuild.ZerosLayer(64, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	plainZeros := gunzip(t, zeros)
	tests := []struct {
		name    string
		archive []byte
		want    string
	}{
		// Spooled (20 MiB of 32), it cannot be staged a second time.
		{"layers bigger than the free space", layersArchive(t, noisy), "image hostile:1: not enough disk space: the image needs 21 MiB"},
		// 1 MB of gzip that expands to 64 MiB while spooled.
		{"archive expanding past the free space", gzipBytes(t, layersArchive(t, plainZeros)), "the archive unpacks to more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tmpfsStore(t, "32m")
			free, _ := freeSpace(s.root)
			_, err := s.Import(context.Background(), bytes.NewReader(tt.archive))
			if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), s.root) {
				t.Fatalf("Import = %v, want ErrNoSpace saying %q and naming %s", err, tt.want, s.root)
			}
			t.Log(err)
			checkNothingLeft(t, s, []string{})
			if after, _ := freeSpace(s.root); after != free {
				t.Errorf("free space %d before, %d after", free, after)
			}
		})
	}
}

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	r, done, err := decompress(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A pull whose layers the manifest declares bigger than the free space is
// refused before a blob is downloaded.
func TestPullRefusedWhenTheDiskIsFull(t *testing.T) {
	isolateDockerConfig(t)
	reg := newTestRegistry(t, nil)
	img := testImage(t, v1.Config{Cmd: []string{"/x"}}, makeTar(t, tarEntry{name: "noise", body: noise(3, 24<<20)}))
	reg.push(t, "big:1", img)
	reg.reset()
	s := tmpfsStore(t, "16m")
	_, err := s.Pull(context.Background(), reg.host+"/big:1", PullOptions{})
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "the image needs 25 MiB") {
		t.Fatalf("Pull = %v, want ErrNoSpace saying what the image needs", err)
	}
	t.Log(err)
	if n := reg.blobGets(); n != 0 {
		t.Errorf("%d blob downloads before the refusal: %v", n, reg.requests())
	}
	checkNothingLeft(t, s, []string{})
}

// A disk that fills up while an image is unpacked fails the unpack with
// ErrNoSpace and takes back every byte it wrote.
func TestRootfsOnAFullDisk(t *testing.T) {
	s := tmpfsStore(t, "48m")
	mustImport(t, s, layersArchive(t, makeTar(t, tarEntry{name: "noise", body: noise(9, 12<<20)})))
	blobs := blobNames(t, s)
	free, _ := freeSpace(s.root)
	filler := filepath.Join(filepath.Dir(s.root), "filler")
	if err := os.WriteFile(filler, make([]byte, free-(4<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := freeSpace(s.root)
	_, _, err := s.Rootfs(context.Background(), "hostile:1")
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), s.root+" filled up while unpacking") {
		t.Fatalf("Rootfs on a full disk = %v, want ErrNoSpace naming the store", err)
	}
	t.Log(err)
	checkNothingLeft(t, s, blobs)
	if after, _ := freeSpace(s.root); after != before {
		t.Errorf("free space %d before the unpack, %d after", before, after)
	}
}

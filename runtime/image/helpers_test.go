package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tarEntry describes one entry of a test layer; typ defaults to a regular
// file, mode to 0644 (0755 for directories).
type tarEntry struct {
	name     string
	typ      byte
	body     string
	link     string
	mode     int64
	uid, gid int
	mtime    time.Time
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: e.mtime, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock {
			h.Devmajor, h.Devminor = 1, 3
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %s: %v", e.name, err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testImage builds an image from layer tars with ggcr (gzip layers).
func testImage(t testing.TB, cfg v1.Config, layers ...[]byte) v1.Image {
	t.Helper()
	img := empty.Image
	for _, l := range layers {
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(l)), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}
	cf.Config = cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// dockerArchive writes a docker-archive the way `docker save` does, with
// plain layer tars (or gzip ones when gzipLayers), naming img by tags.
func dockerArchive(t testing.TB, img v1.Image, gzipLayers bool, tags ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfgName, _ := img.ConfigName()
	add(cfgName.Hex+".json", rawCfg)
	layers, _ := img.Layers()
	var names []string
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		if gzipLayers {
			b = gzipBytes(t, b)
		}
		d, _ := l.DiffID()
		name := d.Hex + "/layer.tar"
		add(name, b)
		names = append(names, name)
	}
	if tags == nil {
		tags = []string{}
	}
	m, _ := json.Marshal([]dockerManifest{{Config: cfgName.Hex + ".json", RepoTags: tags, Layers: names}})
	add("manifest.json", m)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ociArchive writes img as a tarball of an OCI image layout; refName, when
// set, is its org.opencontainers.image.ref.name.
func ociArchive(t testing.TB, img v1.Image, refName string) []byte {
	t.Helper()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	var opts []layout.Option
	if refName != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{refNameAnnotation: refName}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		t.Fatal(err)
	}
	return tarDir(t, dir)
}

func tarDir(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newTestStore(t testing.TB) *Store {
	t.Helper()
	s, err := New(Config{Root: filepath.Join(t.TempDir(), "images")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustImport(t testing.TB, s *Store, archive []byte) []Image {
	t.Helper()
	imgs, err := s.Import(context.Background(), bytes.NewReader(archive))
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	return imgs
}

// snapshot records every path under dir with its type, size and mtime, to
// show that an operation changed nothing.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		v := fi.Mode().String()
		if !fi.IsDir() {
			v += fmt.Sprintf(" %d %s", fi.Size(), fi.ModTime())
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testUnpackLimit is the unpack budget of tests that are not about it.
const testUnpackLimit = 8 << 20

// checkNothingLeft fails t unless the store holds no work in progress, no
// unpacked rootfs, and exactly the blobs it held before (want).
func checkNothingLeft(t testing.TB, s *Store, want []string) {
	t.Helper()
	for _, d := range []string{"tmp", "rootfs"} {
		if ents, _ := os.ReadDir(s.path(d)); len(ents) != 0 {
			t.Errorf("%s/ holds %d leftovers: %v", d, len(ents), ents)
		}
	}
	if diff := cmp.Diff(want, blobNames(t, s)); diff != "" {
		t.Errorf("blobs (-before +after):\n%s", diff)
	}
}

func blobNames(t testing.TB, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.path("blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

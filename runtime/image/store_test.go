package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

func helloImage(t testing.TB, greeting string) v1.Image {
	return testImage(t, v1.Config{Entrypoint: []string{"/hello"}, Cmd: []string{"-v"}, Env: []string{"A=1"}, WorkingDir: "/work", User: "1000:1000"},
		makeTar(t, tarEntry{name: "hello", body: greeting, mode: 0o755}, tarEntry{name: "etc/", typ: '5'}, tarEntry{name: "etc/motd", body: "hi\n"}))
}

func TestImportFormats(t *testing.T) {
	img := helloImage(t, "#!hello")
	ociDigest, _ := img.Digest()
	cfgName, _ := img.ConfigName()
	tests := []struct {
		name       string
		archive    []byte
		wantDigest string // "" when the store builds the manifest
	}{
		{"docker-archive plain layers", dockerArchive(t, img, false, "hello:1"), ""},
		{"docker-archive gzip layers", dockerArchive(t, img, true, "hello:1"), ""},
		{"docker-archive gzipped", gzipBytes(t, dockerArchive(t, img, false, "hello:1")), ""},
		{"oci layout", ociArchive(t, img, "hello:1"), ociDigest.String()},
		{"oci layout gzipped", gzipBytes(t, ociArchive(t, img, "docker.io/library/hello:1")), ociDigest.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t)
			imgs := mustImport(t, s, tt.archive)
			if len(imgs) != 1 {
				t.Fatalf("Import returned %d images, want 1", len(imgs))
			}
			got := imgs[0]
			if tt.wantDigest != "" && got.Digest != tt.wantDigest {
				t.Errorf("Digest = %s, want %s", got.Digest, tt.wantDigest)
			}
			want := Image{Ref: "hello:1", Digest: got.Digest, ID: cfgName.String(), Size: got.Size, Platform: "linux/" + runtime.GOARCH, Created: got.Created}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("imported image (-want +got):\n%s", diff)
			}
			if got.Created.Year() != 2024 || got.Size <= 0 {
				t.Errorf("Created = %v, Size = %d", got.Created, got.Size)
			}
			for _, ref := range []string{"hello:1", "docker.io/library/hello:1", "index.docker.io/library/hello:1", got.Digest, got.ID} {
				g, err := s.Get(ref)
				if err != nil {
					t.Fatalf("Get(%q): %v", ref, err)
				}
				if diff := cmp.Diff(got, g); diff != "" {
					t.Errorf("Get(%q) (-import +get):\n%s", ref, diff)
				}
			}
			dir, rc, err := s.Rootfs(context.Background(), "hello:1")
			if err != nil {
				t.Fatal(err)
			}
			if b := readFile(t, filepath.Join(dir, "hello")); b != "#!hello" {
				t.Errorf("hello = %q", b)
			}
			wantRC := RunConfig{Entrypoint: []string{"/hello"}, Cmd: []string{"-v"}, Env: []string{"A=1"}, WorkingDir: "/work", User: "1000:1000"}
			if diff := cmp.Diff(wantRC, rc); diff != "" {
				t.Errorf("RunConfig (-want +got):\n%s", diff)
			}
			// The store is an OCI layout other tools can read.
			if _, err := layout.ImageIndexFromPath(s.root); err != nil {
				t.Errorf("store is not an OCI layout: %v", err)
			}
			p, _ := layout.FromPath(s.root)
			h, _ := v1.NewHash(got.Digest)
			li, err := p.Image(h)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := li.Layers(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestImportSameImageTwice(t *testing.T) {
	img := helloImage(t, "hello")
	for name, archive := range map[string][]byte{
		"docker": dockerArchive(t, img, false, "hello:1"),
		"oci":    ociArchive(t, img, "hello:1"),
	} {
		t.Run(name, func(t *testing.T) {
			s := newTestStore(t)
			first := mustImport(t, s, archive)
			before := snapshot(t, s.root)
			second := mustImport(t, s, archive)
			if diff := cmp.Diff(first, second); diff != "" {
				t.Errorf("second import (-first +second):\n%s", diff)
			}
			if diff := cmp.Diff(before, snapshot(t, s.root)); diff != "" {
				t.Errorf("second import changed the store (-before +after):\n%s", diff)
			}
		})
	}
}

func TestListGetRemove(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	base := makeTar(t, tarEntry{name: "base", body: "shared"})
	one := testImage(t, v1.Config{}, base, makeTar(t, tarEntry{name: "v", body: "1"}))
	two := testImage(t, v1.Config{}, base, makeTar(t, tarEntry{name: "v", body: "2"}))
	mustImport(t, s, dockerArchive(t, one, false, "hello:1", "localhost:5000/x/y:tag"))
	mustImport(t, s, dockerArchive(t, two, false, "hello:2"))

	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, img := range list {
		refs = append(refs, img.Ref)
	}
	if diff := cmp.Diff([]string{"hello:1", "hello:2", "localhost:5000/x/y:tag"}, refs); diff != "" {
		t.Errorf("List refs (-want +got):\n%s", diff)
	}
	if _, err := s.Get("nope:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nope:1) = %v, want ErrNotFound", err)
	}
	if _, err := s.Get("sha256:" + string(bytes.Repeat([]byte("a"), 64))); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown digest) = %v, want ErrNotFound", err)
	}
	if _, err := s.Get("Not A Ref!"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(invalid) = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Rootfs(ctx, "hello:1"); err != nil {
		t.Fatal(err)
	}
	dir2, _, err := s.Rootfs(ctx, "hello:2")
	if err != nil {
		t.Fatal(err)
	}

	if err := s.Remove("docker.io/library/hello:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("hello:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove = %v, want ErrNotFound", err)
	}
	if _, err := s.Get("localhost:5000/x/y:tag"); err != nil {
		t.Errorf("other name of the removed image: %v", err)
	}
	if err := s.Remove("hello:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
	if err := s.Remove("localhost:5000/x/y:tag"); err != nil {
		t.Fatal(err)
	}
	// hello:2 keeps the shared layer and its unpacked rootfs.
	if got := readFile(t, filepath.Join(dir2, "base")); got != "shared" {
		t.Errorf("hello:2 rootfs base = %q", got)
	}
	d2, _, err := s.Rootfs(ctx, "hello:2")
	if err != nil || d2 != dir2 {
		t.Fatalf("Rootfs(hello:2) = %s, %v; want cached %s", d2, err, dir2)
	}
	if got := readFile(t, filepath.Join(d2, "v")); got != "2" {
		t.Errorf("hello:2 v = %q", got)
	}
	// Reopening sees the same names.
	s2, err := New(Config{Root: s.root})
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := s2.List(); len(l) != 1 || l[0].Ref != "hello:2" {
		t.Errorf("reopened List = %+v", l)
	}
	img2, _ := s.Get("hello:2")
	if err := s.Remove(img2.ID); err != nil {
		t.Fatalf("Remove by ID: %v", err)
	}
	for _, d := range []string{"blobs/sha256", "rootfs"} {
		if ents, _ := os.ReadDir(filepath.Join(s.root, d)); len(ents) != 0 {
			t.Errorf("%s not empty after removing every image: %d entries", d, len(ents))
		}
	}
}

func TestImportRetagAndUntagged(t *testing.T) {
	s := newTestStore(t)
	a, b := helloImage(t, "a"), helloImage(t, "b")
	untagged := mustImport(t, s, ociArchive(t, a, ""))
	aDigest, _ := a.Digest()
	if untagged[0].Ref != aDigest.String() {
		t.Errorf("untagged Ref = %q, want digest %s", untagged[0].Ref, aDigest)
	}
	if _, err := s.Get(aDigest.String()); err != nil {
		t.Error(err)
	}
	// Naming the image replaces its digest-only entry.
	mustImport(t, s, ociArchive(t, a, "hello:1"))
	if l, _ := s.List(); len(l) != 1 || l[0].Ref != "hello:1" {
		t.Errorf("List after naming = %+v", l)
	}
	// The name moves to another image.
	got := mustImport(t, s, ociArchive(t, b, "hello:1"))
	if l, _ := s.List(); len(l) != 1 || l[0].Digest != got[0].Digest {
		t.Errorf("List after retag = %+v, want only %s", l, got[0].Digest)
	}
	// A docker-archive entry without tags is known by digest.
	got = mustImport(t, s, dockerArchive(t, a, false))
	if got[0].Ref != got[0].Digest {
		t.Errorf("untagged docker image Ref = %q, want its digest", got[0].Ref)
	}
}

func TestImportBrokenArchiveLeavesStoreUnchanged(t *testing.T) {
	img := helloImage(t, "payload that is long enough to cut in the middle")
	good := dockerArchive(t, img, false, "hello:1")
	oci := ociArchive(t, img, "hello:1")
	corruptOCI := bytes.Clone(oci)
	// Flip a byte inside the layer blob's content: its digest no longer matches.
	layers, _ := img.Layers()
	lb, _ := layers[0].Compressed()
	raw := make([]byte, 64)
	n, _ := lb.Read(raw)
	i := bytes.Index(corruptOCI, raw[:n])
	corruptOCI[i+n-1] ^= 0xff
	gz := gzipBytes(t, good)

	tests := []struct {
		name    string
		archive []byte
		wantErr error
	}{
		{"truncated tar", good[:len(good)/2], nil},
		{"truncated in last member", good[:bytes.Index(good, []byte(`[{"Config"`))+10], nil},
		{"truncated gzip", gz[:len(gz)-10], nil},
		{"corrupt oci layer", corruptOCI, nil},
		{"not an archive", []byte("hello, world"), nil},
		{"empty", nil, ErrUnknownFormat},
		{"tar without images", makeTar(t, tarEntry{name: "x"}), ErrUnknownFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t)
			mustImport(t, s, dockerArchive(t, helloImage(t, "other"), false, "other:1"))
			before := snapshot(t, s.root)
			_, err := s.Import(context.Background(), bytes.NewReader(tt.archive))
			if err == nil {
				t.Fatal("Import succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Import error %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(before, snapshot(t, s.root)); diff != "" {
				t.Errorf("failed import changed the store (-before +after):\n%s", diff)
			}
		})
	}
}

func TestImportCancelled(t *testing.T) {
	s := newTestStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Import(ctx, bytes.NewReader(dockerArchive(t, helloImage(t, "x"), false, "x:1"))); !errors.Is(err, context.Canceled) {
		t.Errorf("Import with cancelled context = %v", err)
	}
}

func TestRootfsWhiteouts(t *testing.T) {
	lower := makeTar(t,
		tarEntry{name: "a/", typ: '5'},
		tarEntry{name: "a/deleted", body: "gone"},
		tarEntry{name: "a/kept", body: "kept"},
		tarEntry{name: "opq/", typ: '5'},
		tarEntry{name: "opq/old", body: "old"},
		tarEntry{name: "opq/sub/old", body: "old"},
		tarEntry{name: "dir/x", body: "x"},
	)
	upper := makeTar(t,
		tarEntry{name: "a/.wh.deleted"},
		tarEntry{name: "opq/new", body: "new"}, // before the marker: still this layer's
		tarEntry{name: "opq/.wh..wh..opq"},
		tarEntry{name: "opq/sub/new", body: "new"},
		tarEntry{name: ".wh.dir"},
		tarEntry{name: "a/.wh.never-existed"},
	)
	s := newTestStore(t)
	mustImport(t, s, ociArchive(t, testImage(t, v1.Config{}, lower, upper), "layers:1"))
	dir, _, err := s.Rootfs(context.Background(), "layers:1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		got = append(got, rel)
		return err
	})
	want := []string{".", "a", "a/kept", "opq", "opq/new", "opq/sub", "opq/sub/new"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rootfs tree (-want +got):\n%s", diff)
	}
	if ents, _ := os.ReadDir(s.path("tmp")); len(ents) != 0 {
		t.Errorf("tmp/ holds %d leftovers", len(ents))
	}
}

func TestRefForms(t *testing.T) {
	tests := []struct{ in, canonical, familiar string }{
		{"hello:1", "index.docker.io/library/hello:1", "hello:1"},
		{"hello", "index.docker.io/library/hello:latest", "hello:latest"},
		{"docker.io/library/hello:1", "index.docker.io/library/hello:1", "hello:1"},
		{"index.docker.io/library/hello:1", "index.docker.io/library/hello:1", "hello:1"},
		{"someone/app:2", "index.docker.io/someone/app:2", "someone/app:2"},
		{"localhost:5000/x/y:tag", "localhost:5000/x/y:tag", "localhost:5000/x/y:tag"},
		{"ghcr.io/a/b@sha256:" + string(bytes.Repeat([]byte("0"), 64)), "ghcr.io/a/b@sha256:" + string(bytes.Repeat([]byte("0"), 64)), "ghcr.io/a/b@sha256:" + string(bytes.Repeat([]byte("0"), 64))},
	}
	for _, tt := range tests {
		c, err := canonicalRef(tt.in)
		if err != nil {
			t.Errorf("canonicalRef(%q): %v", tt.in, err)
			continue
		}
		if c != tt.canonical || familiarRef(c) != tt.familiar {
			t.Errorf("%q: canonical %q familiar %q, want %q %q", tt.in, c, familiarRef(c), tt.canonical, tt.familiar)
		}
	}
}

func TestRootfsConcurrentCallsUnpackOnce(t *testing.T) {
	s := newTestStore(t)
	mustImport(t, s, dockerArchive(t, helloImage(t, "x"), false, "hello:1"))
	dirs := make(chan string, 8)
	for range cap(dirs) {
		go func() {
			d, _, err := s.Rootfs(context.Background(), "hello:1")
			if err != nil {
				t.Error(err)
			}
			dirs <- d
		}()
	}
	first := <-dirs
	for range cap(dirs) - 1 {
		if d := <-dirs; d != first {
			t.Errorf("Rootfs dirs differ: %s, %s", first, d)
		}
	}
	if ents, _ := os.ReadDir(s.path("rootfs")); len(ents) != 1 {
		t.Errorf("rootfs/ holds %d dirs, want 1", len(ents))
	}
}

package imagebuild_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-edge/shoal/internal/imagebuild"
	"github.com/shoal-edge/shoal/runtime/image"
)

func TestWriteAndImport(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(src, []byte("#!tool"), 0o750); err != nil {
		t.Fatal(err)
	}
	spec := imagebuild.Spec{
		Ref: "hello:1",
		Files: []imagebuild.File{
			{Path: "/hello", Mode: 0o755, Data: []byte("hi")},
			{Path: "/usr/local/bin/tool", Src: src},
			{Path: "/etc/app/conf", Data: []byte("x=1")},
		},
		Entrypoint: []string{"/hello"},
		Cmd:        []string{"world"},
		Env:        []string{"PATH=/usr/local/bin"},
		WorkingDir: "/",
	}
	writers := map[string]func(string, imagebuild.Spec) error{
		"docker-archive": imagebuild.WriteDockerArchive,
		"oci-layout":     imagebuild.WriteOCILayout,
	}
	for kind, write := range writers {
		t.Run(kind, func(t *testing.T) {
			archive := filepath.Join(t.TempDir(), "img.tar")
			if err := write(archive, spec); err != nil {
				t.Fatal(err)
			}
			s, err := image.New(image.Config{Root: filepath.Join(t.TempDir(), "images")})
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(archive)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			imgs, err := s.Import(context.Background(), f)
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != 1 || imgs[0].Ref != "hello:1" || imgs[0].Platform != "linux/"+runtime.GOARCH {
				t.Fatalf("imported %+v", imgs)
			}
			dir, rc, err := s.Rootfs(context.Background(), "hello:1")
			if err != nil {
				t.Fatal(err)
			}
			want := image.RunConfig{Entrypoint: spec.Entrypoint, Cmd: spec.Cmd, Env: spec.Env, WorkingDir: "/"}
			if diff := cmp.Diff(want, rc); diff != "" {
				t.Errorf("RunConfig (-want +got):\n%s", diff)
			}
			for p, mode := range map[string]os.FileMode{"hello": 0o755, "usr/local/bin/tool": 0o750, "etc/app/conf": 0o644, "usr/local": os.ModeDir | 0o755} {
				fi, err := os.Stat(filepath.Join(dir, p))
				if err != nil || fi.Mode() != mode {
					t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, mode)
				}
			}
		})
	}
}

func TestReproducibleAndArch(t *testing.T) {
	spec := imagebuild.Spec{Ref: "x:1", Files: []imagebuild.File{{Path: "/x", Data: []byte("x")}}, Arch: "arm/v7"}
	var digests []string
	for range 2 {
		archive := filepath.Join(t.TempDir(), "img.tar")
		if err := imagebuild.WriteOCILayout(archive, spec); err != nil {
			t.Fatal(err)
		}
		s, err := image.New(image.Config{Root: filepath.Join(t.TempDir(), "images"), Platform: "linux/arm/v7"})
		if err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(archive)
		imgs, err := s.Import(context.Background(), f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if imgs[0].Platform != "linux/arm/v7" {
			t.Errorf("Platform = %s", imgs[0].Platform)
		}
		digests = append(digests, imgs[0].Digest)
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds of one spec differ: %v", digests)
	}
}

func TestBadSpec(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "img.tar")
	for _, s := range []imagebuild.Spec{
		{Ref: "Bad Ref!"},
		{Ref: "x:1", Files: []imagebuild.File{{Path: "/"}}},
		{Ref: "x:1", Files: []imagebuild.File{{Path: "/a", Src: "/does/not/exist"}}},
	} {
		if err := imagebuild.WriteDockerArchive(dst, s); err == nil {
			t.Errorf("WriteDockerArchive(%+v) succeeded", s)
		}
	}
}

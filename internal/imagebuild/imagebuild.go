// Package imagebuild builds tiny one-layer container images from files in
// memory or on the host, and writes them as a docker-archive or as a tarball
// of an OCI image layout. It also makes hostile layers (SparseLayer,
// ZerosLayer) and archives of them (WriteLayersArchive) for tests of what a
// node refuses. It serves shoal's tests, demo and examples; the shoal
// binary never imports it.
//
// The output is reproducible: file times and the creation time are the Unix
// epoch, so the same Spec always gives the same digests.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one file of the image's single layer.
type File struct {
	// Path is the absolute path in the image, e.g. "/hello".
	Path string
	// Mode is the permission bits; 0 means Src's mode, or 0644.
	Mode os.FileMode
	// Data is the content, unless Src is set.
	Data []byte
	// Src, when set, is a host file to copy the content from.
	Src string
}

// Spec describes an image.
type Spec struct {
	// Ref names the image, e.g. "hello:1".
	Ref        string
	Files      []File
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	// Arch is the GOARCH the image is for, optionally with a variant
	// ("arm/v7"); empty means runtime.GOARCH.
	Arch string
}

// refNameAnnotation names an image in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// WriteDockerArchive writes the image s describes to path as a
// docker-archive, as `docker save` would, tagged s.Ref.
func WriteDockerArchive(path string, s Spec) error {
	tag, err := name.NewTag(s.Ref)
	if err != nil {
		return fmt.Errorf("imagebuild %s: %w", s.Ref, err)
	}
	img, err := build(s, false)
	if err != nil {
		return fmt.Errorf("imagebuild %s: %w", s.Ref, err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("imagebuild %s: write %s: %w", s.Ref, path, err)
	}
	return nil
}

// WriteOCILayout writes the image s describes to path as a tarball of an OCI
// image layout whose index annotates it with
// org.opencontainers.image.ref.name = s.Ref.
func WriteOCILayout(path string, s Spec) error {
	img, err := build(s, true)
	if err != nil {
		return fmt.Errorf("imagebuild %s: %w", s.Ref, err)
	}
	dir, err := os.MkdirTemp("", "imagebuild-")
	if err != nil {
		return fmt.Errorf("imagebuild %s: %w", s.Ref, err)
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("imagebuild %s: layout: %w", s.Ref, err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: s.Ref})); err != nil {
		return fmt.Errorf("imagebuild %s: layout: %w", s.Ref, err)
	}
	if err := tarDir(path, dir); err != nil {
		return fmt.Errorf("imagebuild %s: %w", s.Ref, err)
	}
	return nil
}

// build assembles the image; oci selects OCI media types instead of
// Docker's.
func build(s Spec, oci bool) (v1.Image, error) {
	layerTar, err := layerBytes(s.Files)
	if err != nil {
		return nil, err
	}
	var opts []tarball.LayerOption
	base := empty.Image
	if oci {
		opts = append(opts, tarball.WithMediaType(types.OCILayer))
		base = mutate.MediaType(base, types.OCIManifestSchema1)
		base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	arch := s.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	cf.OS = "linux"
	cf.Architecture, cf.Variant, _ = strings.Cut(arch, "/")
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config = v1.Config{Entrypoint: s.Entrypoint, Cmd: s.Cmd, Env: s.Env, WorkingDir: s.WorkingDir}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return img, nil
}

// layerBytes makes the layer tar: every file, preceded by entries for its
// parent directories, so the image does not depend on an unpacker creating
// them.
func layerBytes(files []File) ([]byte, error) {
	dirs := map[string]bool{}
	type entry struct {
		hdr  *tar.Header
		data []byte
	}
	var entries []entry
	for _, f := range files {
		p := path.Clean("/" + f.Path)
		if p == "/" {
			return nil, fmt.Errorf("file %q: not a file path", f.Path)
		}
		data, mode := f.Data, f.Mode
		if f.Src != "" {
			b, err := os.ReadFile(f.Src)
			if err != nil {
				return nil, fmt.Errorf("file %s: %w", f.Path, err)
			}
			data = b
			if mode == 0 {
				if fi, err := os.Stat(f.Src); err == nil {
					mode = fi.Mode().Perm()
				}
			}
		}
		if mode == 0 {
			mode = 0o644
		}
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
		entries = append(entries, entry{&tar.Header{
			Name: strings.TrimPrefix(p, "/"), Typeflag: tar.TypeReg, Mode: int64(mode.Perm()),
			Size: int64(len(data)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX,
		}, data})
	}
	var names []string
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names) // parents sort before their children
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range names {
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(d, "/") + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
			return nil, fmt.Errorf("layer dir %s: %w", d, err)
		}
	}
	for _, e := range entries {
		if err := tw.WriteHeader(e.hdr); err != nil {
			return nil, fmt.Errorf("layer file %s: %w", e.hdr.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("layer file %s: %w", e.hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// tarDir writes the regular files and directories under dir to a tar file
// at dst.
func tarDir(dst, dir string) error {
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	tw := tar.NewWriter(out)
	err = tw.AddFS(os.DirFS(dir))
	if cerr := tw.Close(); err == nil {
		err = cerr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("write %s from %s: %w", dst, filepath.Base(dir), err)
	}
	return nil
}

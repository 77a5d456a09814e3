package imagebuild

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"

	"github.com/klauspost/compress/gzip"
)

// Hostile layers, for tests of what a node accepts: they are valid tar
// (and gzip) that claim, or expand to, far more than they weigh.

// SparseLayer returns a layer tar of about 2 KiB holding one file, name,
// of size bytes whose content is zeros except data at its end: a sparse
// file in the old GNU format, whose holes a tar reader yields as zeros.
func SparseLayer(name string, size int64, data []byte) ([]byte, error) {
	if len(name) >= 100 || len(data) == 0 || int64(len(data)) > size {
		return nil, fmt.Errorf("sparse layer %s: want a name under 100 bytes and 1 to %d bytes of data", name, size)
	}
	var h [512]byte
	copy(h[0:], name)
	putNumber(h[100:108], 0o644)
	putNumber(h[108:116], 0)
	putNumber(h[116:124], 0)
	putNumber(h[124:136], int64(len(data))) // the bytes stored
	putNumber(h[136:148], 0)
	h[156] = tar.TypeGNUSparse
	copy(h[257:], "ustar  \x00") // GNU magic and version
	// One data region, at the end; everything before it is a hole.
	putNumber(h[386:398], size-int64(len(data)))
	putNumber(h[398:410], int64(len(data)))
	putNumber(h[483:495], size) // the file's apparent size
	for i := 148; i < 156; i++ {
		h[i] = ' '
	}
	var sum int64
	for _, c := range h {
		sum += int64(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))

	var buf bytes.Buffer
	buf.Write(h[:])
	buf.Write(data)
	buf.Write(make([]byte, (512-len(data)%512)%512))
	buf.Write(make([]byte, 1024)) // end of archive
	return buf.Bytes(), nil
}

// putNumber writes n into a tar header field: octal when it fits, else
// GNU's base-256.
func putNumber(field []byte, n int64) {
	s := strconv.FormatInt(n, 8)
	if len(s) < len(field) {
		copy(field, fmt.Sprintf("%0*s\x00", len(field)-1, s))
		return
	}
	clear(field)
	binary.BigEndian.PutUint64(field[len(field)-8:], uint64(n))
	field[0] = 0x80
}

// ZerosLayer returns a gzip-compressed layer tar of files files named
// zeros/N, each of each bytes of zeros: a few MB that expand to files*each
// bytes.
func ZerosLayer(files int, each int64) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	zeros := make([]byte, 1<<20)
	for i := range files {
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("zeros/%d", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: each}); err != nil {
			return nil, fmt.Errorf("zeros layer: %w", err)
		}
		for left := each; left > 0; {
			n, err := tw.Write(zeros[:min(left, int64(len(zeros)))])
			if err != nil {
				return nil, fmt.Errorf("zeros layer: %w", err)
			}
			left -= int64(n)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("zeros layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("zeros layer: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteLayersArchive writes a docker-archive tagged ref whose image has
// the given layers exactly as given (plain or gzip tar), with their
// diff_ids in its config, for the host's architecture.
func WriteLayersArchive(path, ref string, layers ...[]byte) error {
	var diffIDs []string
	for i, l := range layers {
		d, err := diffID(l)
		if err != nil {
			return fmt.Errorf("imagebuild %s: layer %d: %w", ref, i, err)
		}
		diffIDs = append(diffIDs, d)
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Cmd": []string{"/nothing"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return fmt.Errorf("imagebuild %s: %w", ref, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))})
		}
		if err == nil {
			_, err = tw.Write(b)
		}
	}
	add("config.json", cfg)
	var names []string
	for i, l := range layers {
		names = append(names, fmt.Sprintf("layer%d.tar", i))
		add(names[i], l)
	}
	m, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{ref}, "Layers": names}})
	add("manifest.json", m)
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = os.WriteFile(path, buf.Bytes(), 0o644)
	}
	if err != nil {
		return fmt.Errorf("imagebuild %s: %w", ref, err)
	}
	return nil
}

// diffID is the digest of a layer's uncompressed tar.
func diffID(layer []byte) (string, error) {
	var r io.Reader = bytes.NewReader(layer)
	if bytes.HasPrefix(layer, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return "", err
		}
		r = zr
	}
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

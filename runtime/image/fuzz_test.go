//go:build linux

package image

import (
	"io/fs"
	"path/filepath"
	"testing"
)

// FuzzUnpack feeds arbitrary bytes to the layer unpacker as a tar stream and
// checks that nothing is ever written outside the target directory, and that
// no device node, FIFO, setuid or setgid file appears inside it. Errors are
// expected; escapes are not. Seeds live in testdata/fuzz/FuzzUnpack too.
//
// Each new input is minimised for up to -fuzzminimizetime (60s by default),
// which looks like a stall; run with e.g. -fuzzminimizetime=5s.
func FuzzUnpack(f *testing.F) {
	f.Add(makeTar(f, tarEntry{name: "../evil", body: "x"}))
	f.Add(makeTar(f, tarEntry{name: "l", typ: '2', link: "/"}, tarEntry{name: "l/etc/evil", body: "x"}))
	f.Add(makeTar(f, tarEntry{name: "l", typ: '2', link: "../.."}, tarEntry{name: "l/evil", body: "x"}))
	f.Add(makeTar(f, tarEntry{name: "h", typ: '1', link: "../outside/sentinel"}))
	f.Add(makeTar(f, tarEntry{name: "a/f", body: "x", mode: 0o6755}, tarEntry{name: "a/.wh..wh..opq"}, tarEntry{name: ".wh.a"}))
	f.Fuzz(func(t *testing.T, layer []byte) {
		root, outside, _ := unpackInto(t, layer)
		checkContained(t, root, outside)
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			if fi.Mode()&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSetuid|fs.ModeSetgid) != 0 {
				t.Errorf("%s has mode %v", p, fi.Mode())
			}
			return nil
		})
	})
}

//go:build linux

package image

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"
)

// FuzzUnpack feeds arbitrary bytes to the layer unpacker as a tar stream and
// checks that nothing is ever written outside the target directory, that
// no device node, FIFO, setuid or setgid file appears inside it, and that
// the files in it add up to no more than the unpack limit, in apparent
// size and on disk. Errors are expected; escapes are not. Seeds live in testdata/fuzz/FuzzUnpack too.
//
// Each new input is minimised for up to -fuzzminimizetime (60s by default),
// which looks like a stall; run with e.g. -fuzzminimizetime=5s.
func FuzzUnpack(f *testing.F) {
	f.Add(makeTar(f, tarEntry{name: "../evil", body: "x"}))
	f.Add(makeTar(f, tarEntry{name: "l", typ: '2', link: "/"}, tarEntry{name: "l/etc/evil", body: "x"}))
	f.Add(makeTar(f, tarEntry{name: "l", typ: '2', link: "../.."}, tarEntry{name: "l/evil", body: "x"}))
	f.Add(makeTar(f, tarEntry{name: "h", typ: '1', link: "../outside/sentinel"}))
	f.Add(makeTar(f, tarEntry{name: "a/f", body: "x", mode: 0o6755}, tarEntry{name: "a/.wh..wh..opq"}, tarEntry{name: ".wh.a"}))
	f.Add(sparseLayer(f, 100<<30))
	f.Add(sparseLayer(f, testUnpackLimit))
	f.Fuzz(func(t *testing.T, layer []byte) {
		root, outside, _ := unpackInto(t, layer)
		checkContained(t, root, outside)
		var size, disk int64
		inodes := map[uint64]bool{} // a hardlinked file counts once
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
			if st := fi.Sys().(*syscall.Stat_t); fi.Mode().IsRegular() && !inodes[st.Ino] {
				inodes[st.Ino] = true
				size += fi.Size()
				disk += st.Blocks * 512
			}
			return nil
		})
		// Room on disk only for the rounding of files to whole blocks.
		if size > testUnpackLimit || disk > testUnpackLimit+1<<20 {
			t.Errorf("unpacked %d bytes taking %d on disk, over the limit of %d", size, disk, testUnpackLimit)
		}
	})
}

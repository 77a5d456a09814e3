package store

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// DamagedError says the state file cannot be opened as it is. bbolt maps
// the file and trusts its meta pages: a file cut short (a power loss while
// the file grew, a full disk, a copy that did not finish) makes it touch
// pages past the end, which kills the process with SIGBUS before any error
// can be returned. So the size is checked first. A file whose format
// number cannot be read (see migrate) is damaged too.
type DamagedError struct {
	Path     string
	Size     int64  // bytes in the file
	Needs    int64  // bytes its newest intact meta page names
	MetaTxID uint64 // that meta page's transaction
	NoMeta   bool   // no meta page is intact
	Schema   string // else: what is wrong with meta/schema
}

func (e *DamagedError) Error() string {
	var what string
	switch {
	case e.Schema != "":
		// Not a cut: bbolt read the file, and shoal must not guess
		// which state format it holds.
		return fmt.Sprintf("state file %s is damaged: %s, so its state format is unknown: "+
			"move it away (mv %s %s.damaged) and start again: shoal rebuilds it from the Raft log and snapshots in the same data dir",
			e.Path, e.Schema, e.Path, e.Path)
	case e.NoMeta:
		what = "neither of its two header pages is intact"
	default:
		what = fmt.Sprintf("it holds %d bytes, and its last commit (transaction %d) needs %d", e.Size, e.MetaTxID, e.Needs)
	}
	return fmt.Sprintf("state file %s is damaged: %s (cut short by a power loss, a full disk or an unfinished copy?): "+
		"move it away (mv %s %s.damaged) and start again: shoal rebuilds it from the Raft log and snapshots in the same data dir",
		e.Path, what, e.Path, e.Path)
}

// Where bbolt keeps what checkSize reads: a page header of 16 bytes, then
// the meta: magic, version, page size, flags (4 bytes each), the root
// bucket (16), the freelist page, the page high-water mark, the
// transaction id and an FNV-64a checksum of what precedes it (8 each).
const (
	metaAt       = 16
	boltMagic    = 0xED0CDAED
	metaPageSize = 8
	metaPgid     = 40
	metaTxID     = 48
	metaChecksum = 56
)

// checkSize refuses a state file shorter than its newest intact meta page
// says it is. A missing or empty file is new, and fine.
func checkSize(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open state %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open state %s: %w", path, err)
	}
	size := st.Size()
	if size == 0 {
		return nil
	}
	best, found := uint64(0), false
	var needs int64
	// The first meta page says the page size; the second sits one page
	// further. Each is read whole or not at all.
	buf := make([]byte, metaAt+metaChecksum+8)
	for i, at := 0, int64(0); i < 2; i++ {
		if _, err := f.ReadAt(buf, at); err != nil && err != io.EOF {
			return fmt.Errorf("read state %s: %w", path, err)
		} else if err == io.EOF {
			break
		}
		m := buf[metaAt:]
		h := fnv.New64a()
		h.Write(m[:metaChecksum])
		ok := binary.NativeEndian.Uint32(m) == boltMagic && h.Sum64() == binary.NativeEndian.Uint64(m[metaChecksum:])
		ps := binary.NativeEndian.Uint32(m[metaPageSize:])
		if ok && ps >= 512 && ps <= 1<<20 {
			if tx := binary.NativeEndian.Uint64(m[metaTxID:]); !found || tx > best {
				best, found = tx, true
				needs = int64(binary.NativeEndian.Uint64(m[metaPgid:])) * int64(ps)
			}
		}
		if i == 0 {
			if !ok || ps < 512 || ps > 1<<20 {
				at = 4096 // bbolt's default page size: where the second one is then
			} else {
				at = int64(ps)
			}
		}
	}
	switch {
	case !found:
		return &DamagedError{Path: path, Size: size, NoMeta: true}
	case size < needs:
		return &DamagedError{Path: path, Size: size, Needs: needs, MetaTxID: best}
	}
	return nil
}

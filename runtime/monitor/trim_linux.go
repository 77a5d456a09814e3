package monitor

import (
	"bufio"
	"encoding/binary"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// trimMemory gives back what starting took: the heap's garbage, and this
// process's mappings of the binary's read-only segments.
//
// The second needs a word. shoal is one big binary; its package inits and
// the kernel's fault-around (which maps up to 64 KiB around every page
// fault) leave most of its text and rodata mapped into every process of it,
// some 12 MiB of RSS. Those are clean page-cache pages shared with the
// daemon and every other monitor, reclaimable at any time, so they cost
// little; but they make every monitor look big. MADV_DONTNEED on a private
// mapping that was never written drops the page-table entries only: the
// page cache keeps the pages, and what the monitor still runs faults back
// in (a minor fault). It must never touch a writable mapping, whose private
// copies it would discard.
func trimMemory() {
	debug.FreeOSMemory()
	trimMappings()
	// The start's tail (the daemon's first requests, the first log
	// lines) maps another 1-2 MiB of the binary: drop that once too.
	time.AfterFunc(retrimAfter, trimMappings)
	retrimAfterGC()
}

// retrimAfter is when a monitor trims the binary's mappings a second time.
const retrimAfter = 5 * time.Second

// retrimAfterGC trims the binary's mappings again after every garbage
// collection from now on: a collection reads type descriptors and stack
// maps all over rodata, and a monitor that lived a while otherwise ends up
// with 8-10 MiB of them mapped (measured after 20 minutes: one forced
// collection every two minutes).
func retrimAfterGC() {
	type sentinel struct{ _ *byte } // with a pointer: never a tiny allocation
	var arm func()
	arm = func() {
		// Its finalizer runs once a collection has found it unreachable.
		runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
			trimMappings()
			arm()
		})
	}
	arm()
}

// trimMappings drops this process's page-table entries of the binary's
// read-only mappings. Not in a position-independent binary: there the
// loader's relocations wrote private pages of read-only mappings
// (.data.rel.ro), and dropping those would lose them.
func trimMappings() {
	if pie() {
		return
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	// Monitors outlive upgrades: their binary may be gone from disk.
	exe = strings.TrimSuffix(exe, " (deleted)")
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	var ranges [][2]uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "start-end perms offset dev inode path"
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || (fields[1] != "r-xp" && fields[1] != "r--p") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		ranges = append(ranges, [2]uintptr{uintptr(start), uintptr(end)})
	}
	for _, r := range ranges {
		_ = madvise(r[0], r[1]-r[0], unix.MADV_DONTNEED)
	}
}

// pie reports whether this binary is position-independent (ELF type
// ET_DYN), or cannot be read to tell.
var pie = sync.OnceValue(func() bool {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return true
	}
	defer f.Close()
	var h [18]byte // e_ident (16 bytes), then e_type
	if _, err := io.ReadFull(f, h[:]); err != nil || string(h[:4]) != "\x7fELF" {
		return true
	}
	typ := binary.LittleEndian.Uint16(h[16:])
	if h[5] == 2 { // ELFDATA2MSB
		typ = binary.BigEndian.Uint16(h[16:])
	}
	return typ != 2 // ET_EXEC
})

func madvise(addr, length uintptr, advice int) error {
	_, _, e := unix.Syscall(unix.SYS_MADVISE, addr, length, uintptr(advice))
	if e != 0 {
		return e
	}
	return nil
}

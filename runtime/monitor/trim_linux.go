package monitor

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

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
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
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

func madvise(addr, length uintptr, advice int) error {
	_, _, e := unix.Syscall(unix.SYS_MADVISE, addr, length, uintptr(advice))
	if e != 0 {
		return e
	}
	return nil
}

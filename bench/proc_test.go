package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Readers of /proc for the memory, I/O and CPU figures. Sizes are in bytes.

// memOf is a process's resident set size and proportional set size (shared
// pages divided among the processes that map them), from smaps_rollup.
type memOf struct{ RSS, PSS int64 }

func readMem(pid int) (memOf, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return memOf{}, err
	}
	var m memOf
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			m.RSS = kb * 1024
		case "Pss:":
			m.PSS = kb * 1024
		}
	}
	if m.RSS == 0 {
		return m, fmt.Errorf("no Rss in /proc/%d/smaps_rollup", pid)
	}
	return m, nil
}

// ioOf is a process's /proc/PID/io: bytes it caused to be written to
// storage (write_bytes, counted when page-cache pages are dirtied) and bytes
// it passed to write-like syscalls (wchar, whatever the file system).
type ioOf struct{ WriteBytes, WChar, SyscW int64 }

func readIO(pid int) (ioOf, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return ioOf{}, err
	}
	var io ioOf
	for _, l := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "write_bytes":
			io.WriteBytes = n
		case "wchar":
			io.WChar = n
		case "syscw":
			io.SyscW = n
		}
	}
	return io, nil
}

// cpuTicks is a process's user+system time in clock ticks (USER_HZ, 100 on
// Linux), fields 14 and 15 of /proc/PID/stat.
func cpuTicks(pid int) (int64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s, nil
}

// statFields are the fields of /proc/PID/stat after the command name (so
// index 0 is the state, 1 the ppid).
func statFields(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return f, nil
}

// procEntry is one live process: its parent and command line.
type procEntry struct {
	PID, PPID int
	Cmdline   string // arguments joined by spaces
}

// processes lists the live processes (those that vanish while being read
// are left out).
func processes() []procEntry {
	ents, _ := os.ReadDir("/proc")
	var out []procEntry
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, procEntry{PID: pid, PPID: ppid, Cmdline: strings.TrimSpace(string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))})
	}
	return out
}

// monitorMarker names shoal's per-container monitor process in its command
// line, once it has one.
const monitorMarker = "__shoal_monitor"

// helpers are the processes that exist for containers but are neither the
// daemon nor a container's own: the daemon's descendants outside the
// containers' process trees, and the containers' ancestors other than the
// daemon and pid 1 (a monitor that was reparented away from the daemon, as
// conmon or containerd-shim are, still sits above its container). Those
// whose command line carries monitorMarker are shoal's monitors.
func helpers(daemonPID int, containerPIDs []int) []procEntry {
	ps := processes()
	byPID := map[int]procEntry{}
	children := map[int][]procEntry{}
	for _, p := range ps {
		byPID[p.PID] = p
		children[p.PPID] = append(children[p.PPID], p)
	}
	inContainer := map[int]bool{}
	var mark func(pid int)
	mark = func(pid int) {
		inContainer[pid] = true
		for _, c := range children[pid] {
			mark(c.PID)
		}
	}
	for _, pid := range containerPIDs {
		mark(pid)
	}
	seen := map[int]bool{daemonPID: true, 1: true, 0: true}
	var out []procEntry
	add := func(p procEntry) {
		if !seen[p.PID] && !inContainer[p.PID] {
			seen[p.PID] = true
			out = append(out, p)
		}
	}
	var walk func(pid int)
	walk = func(pid int) {
		for _, c := range children[pid] {
			if inContainer[c.PID] {
				continue
			}
			add(c)
			walk(c.PID)
		}
	}
	walk(daemonPID)
	for _, pid := range containerPIDs {
		for p, ok := byPID[byPID[pid].PPID]; ok && p.PID != daemonPID && p.PID > 1; p, ok = byPID[p.PPID] {
			add(p)
		}
	}
	return out
}

// logLoad logs the machine's load averages: the benchmarks measure a shared
// machine, and a busy one makes every figure slower and noisier.
func logLoad(b *testing.B, when string) {
	b.Helper()
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average %s: %s", when, strings.Join(strings.Fields(string(data))[:3], " "))
	}
}

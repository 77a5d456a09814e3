// Package cgroup owns the control groups of shoal's containers: one group per
// container at <parent>/<id> (for example /shoal/web-1), its resource limits,
// its statistics, its OOM verdict and its removal.
//
// It wraps containerd/cgroups/v3 and picks the driver from the host: cgroup v2
// when /sys/fs/cgroup is the unified hierarchy, cgroup v1 (every mounted v1
// hierarchy) on legacy and hybrid hosts. Callers never see which one is used.
//
// Caveats: limits need the matching controller; on a v2 host where the daemon
// itself sits in the root of a delegated tree (a container without a private
// cgroup namespace), enabling controllers fails by the no-internal-process rule.
package cgroup

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Resources are the limits of one container. A zero field means no limit.
type Resources struct {
	// Memory is the memory limit in bytes (swap is not allowed on top).
	Memory int64
	// CPU is the CPU bandwidth in cores, e.g. 0.5 for half a core.
	CPU float64
	// Pids is the maximum number of tasks.
	Pids int64
}

// Stats are a group's current usage figures.
type Stats struct {
	// MemoryBytes is the memory in use, page cache included.
	MemoryBytes uint64
	// CPUNanos is the CPU time consumed since the group was created.
	CPUNanos uint64
	// Pids is the number of tasks in the group.
	Pids uint64
}

// cpuPeriod is the CFS period the CPU quota is expressed in: 100ms, the
// kernel's default, so quota = cores * period.
const cpuPeriod = 100000

// cpuQuota turns cores into a CFS quota in microseconds per cpuPeriod; it
// never returns less than the kernel minimum of 1ms.
// cpuShares gives a container its CPU limit as its share under contention
// too: 1024 per core, as Docker's --cpus does with cpu.shares.
func cpuShares(cores float64) uint64 {
	return max(uint64(cores*1024), 2)
}

// cpuWeight converts v1 shares to a v2 weight (1-10000), the conversion
// runc and the kernel documentation use.
func cpuWeight(shares uint64) uint64 {
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}

func cpuQuota(cores float64) int64 {
	// Past about 9e13 cores the product overflows int64 to a negative
	// number, which the floor below turned into 1 % of a CPU.
	const most = 1 << 40
	q := cores * cpuPeriod
	switch {
	case q != q || q > most: // NaN or past any machine
		return most
	case q < 1000:
		return 1000
	}
	return int64(q)
}

// ValidName reports whether s may name a cgroup shoal makes:
// ^[A-Za-z0-9][A-Za-z0-9_.-]*$, checked without a regexp (compiling one
// costs every process of the binary at start).
func ValidName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// groupPath validates parent and id and returns the group's path inside a
// hierarchy, "/<parent>/<id>". Parent may have several segments ("shoal/n1");
// nothing may climb out with "..".
func groupPath(parent, id string) (string, error) {
	if err := checkParent(parent); err != nil {
		return "", err
	}
	if !ValidName(id) || len(id) > 200 {
		return "", fmt.Errorf("cgroup id %q: want letters, digits, '_', '.', '-' (starting with a letter or digit)", id)
	}
	return "/" + parent + "/" + id, nil
}

func checkParent(parent string) error {
	if parent == "" {
		return fmt.Errorf("cgroup parent is empty")
	}
	for _, seg := range strings.Split(parent, "/") {
		if !ValidName(seg) {
			return fmt.Errorf("cgroup parent %q: segment %q: want letters, digits, '_', '.', '-' (starting with a letter or digit)", parent, seg)
		}
	}
	return nil
}

// parseOOMControl reads v1 memory.oom_control. It returns the oom_kill
// counter and whether the kernel reports one at all (it does since 4.13).
func parseOOMControl(b []byte) (oomKill uint64, ok bool) {
	return kvValue(b, "oom_kill")
}

// parseMemoryEvents reads v2 memory.events and returns its oom_kill counter.
func parseMemoryEvents(b []byte) uint64 {
	v, _ := kvValue(b, "oom_kill")
	return v
}

// kvValue finds "key value" in a flat-keyed cgroup file.
func kvValue(b []byte, key string) (uint64, bool) {
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) != 2 || f[0] != key {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return 0, false
		}
		return v, true
	}
	return 0, false
}

// oomByFailcnt is the v1 verdict for kernels older than 4.13, which do not
// count OOM kills: the limit was hit (failcnt > 0) and the peak usage reached
// it, which is as close as those kernels let us get.
func oomByFailcnt(failcnt, maxUsage, limit uint64) bool {
	return failcnt > 0 && limit > 0 && maxUsage >= limit
}

package cgroup

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// WarmMigration makes the next Add of this process fast on cgroup v1 and
// hybrid hosts, and does nothing on cgroup v2, where processes are born in
// their group (UnifiedDir).
//
// The first move of a process between cgroups after a quiet spell waits for
// a kernel RCU grace period (5-15 ms measured here): the kernel first turns
// its cgroup-migration lock to the slow path, and keeps it there until a
// grace period after the last move. Moving this process into the group it
// is already in changes nothing but starts that wait at once, in the
// background, so a container start pays it while it prepares the
// container instead of after forking it.
func WarmMigration() {
	h, err := detect()
	if err != nil || h.v2Root != "" {
		return
	}
	go func() {
		if procs := ownProcs(); procs != "" {
			_ = os.WriteFile(procs, []byte(strconv.Itoa(os.Getpid())), 0)
		}
	}()
}

// ownProcs is ownProcsFile, looked up once: a daemon stays in its group.
var ownProcs = sync.OnceValue(ownProcsFile)

// ownProcsFile is the cgroup.procs file of this process's group in the first
// v1 hierarchy of /proc/self/cgroup that is mounted where Debian, systemd and
// most distributions mount it; "" when none is.
func ownProcsFile() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		// "4:memory:/system.slice/shoal.service"; v2's line is "0::/...".
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || parts[1] == "" || strings.HasPrefix(parts[1], "name=") {
			continue
		}
		f := filepath.Join("/sys/fs/cgroup", parts[1], parts[2], "cgroup.procs")
		if _, err := os.Stat(f); err == nil {
			return f
		}
	}
	return ""
}

package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// pidsIn lists the processes that have a thread in one of the network
// namespaces with inode numbers inos. Threads count: a process may have
// moved a single thread into a namespace.
func pidsIn(inos map[uint64]bool) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if inNamespaces(pid, inos) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// inNamespaces reports whether a thread of pid is in one of the namespaces.
// A process that is gone, or a zombie (it has left its namespaces), is not.
func inNamespaces(pid int, inos map[uint64]bool) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/ns/net", pid))
	for _, t := range tasks {
		if ino, ok := netnsInode(t); ok && inos[ino] {
			return true
		}
	}
	return false
}

// netnsInode reads the inode number from a link "net:[4026531840]".
func netnsInode(path string) (uint64, bool) {
	link, err := os.Readlink(path)
	if err != nil {
		return 0, false
	}
	s, ok := strings.CutPrefix(link, "net:[")
	if !ok {
		return 0, false
	}
	ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
	return ino, err == nil
}

// Package fds owns what a process that execs a container program does about
// the file descriptors it inherited. It imports only os, strconv and
// syscall: the container monitor program, kept small, links it too.
package fds

import (
	"os"
	"strconv"
	"syscall"
)

// CloseOnExecAbove marks every open fd above fd close-on-exec: fds a daemon
// inherited without the flag (from a service manager, a shell) must not
// reach a container.
func CloseOnExecAbove(fd int) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > fd {
			syscall.CloseOnExec(n)
		}
	}
}

// HelperEnv is the environment to start a Go process with that will
// exec a container's program (a container init, an exec helper): Go's
// runtime otherwise opens its cgroup's CPU limit files at start and keeps
// them open, host descriptors a container could reach through /proc.
var HelperEnv = []string{"GODEBUG=containermaxprocs=0,updatemaxprocs=0"}

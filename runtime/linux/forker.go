package linux

import "os"

// Forker forks container inits for the runtime in another process (see
// Spec.Forker).
type Forker interface {
	// ForkInit forks f. The files in f are the forker's to pass on; the
	// runtime closes its own copies after the call.
	ForkInit(f InitFork) (RemoteInit, error)
}

// InitFork is a container init to fork: its argv, the binary to execute,
// its config and error pipes (its fds 3 and 4), its clone flags and, if
// not nil, the cgroup v2 directory to clone it into (clone3's
// CLONE_INTO_CGROUP; a forker that cannot falls back to the parent's).
type InitFork struct {
	Args           []string
	Exe            *os.File
	Config, Errors *os.File
	Cloneflags     uintptr
	Cgroup         *os.File
}

// RemoteInit is an init a Forker forked.
type RemoteInit interface {
	Pid() int
	// InCgroup reports whether it was born in InitFork.Cgroup.
	InCgroup() bool
	// Exited is closed once it has ended.
	Exited() <-chan struct{}
	// Kill kills it and returns once it has ended.
	Kill()
}

// Package linux owns the life of a container process on Linux: its
// namespaces, the container init that prepares them, and start, wait, signal,
// stop and delete. It uses runtime/cgroup for limits and runtime/rootfs for
// the writable root filesystem; it runs no runc, containerd or shell.
//
// # How a container starts
//
// Start creates the state directory DATA/containers/<id>, the cgroup
// <parent>/<id> and the overlay, then re-executes /proc/self/exe with the
// hidden argument "__shoal_init" in new mount, pid, uts, ipc (and, unless the
// container uses the host network, net) namespaces. The binary's main must
// therefore begin with
//
//	if linux.IsInit(os.Args) {
//		linux.InitMain() // never returns
//	}
//
// The child waits for its configuration on a pipe, which the parent writes
// only after moving the child into the cgroup: no user code ever runs outside
// its limits. The init then builds the container's filesystem (proc, a
// private /dev, read-only /sys, masked /proc paths), pivots into it, sets the
// hostname, brings up loopback, enters a new cgroup namespace and execs the
// user's program, which becomes PID 1 of its pid namespace. Errors before the
// exec travel back on a close-on-exec pipe: EOF means the exec happened.
//
// # Caveats
//
//   - Containers are killed with the daemon (parent-death signal). The kernel
//     ties that signal to the thread that forked, so Start must not be called
//     from a goroutine that locked its OS thread and may exit.
//   - A program running as PID 1 ignores signals it has no handler for, as in
//     Docker; Stop therefore escalates to SIGKILL of the whole cgroup.
//   - No user namespace, capability drop or seccomp filter yet: the process
//     runs as root with the daemon's capabilities.
package linux

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"syscall"

	"github.com/shoal-edge/shoal/runtime/cgroup"
)

// Config configures a Runtime.
type Config struct {
	// StateDir holds one directory per container (DATA/containers).
	StateDir string
	// CgroupParent is the cgroup under which containers' groups are made;
	// "shoal" when empty.
	CgroupParent string
	// Logger receives the runtime's logs; discarded when nil.
	Logger *slog.Logger
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("linux runtime: StateDir %q must be an absolute path", c.StateDir)
	}
	return nil
}

// Spec describes one container.
type Spec struct {
	// ID is unique among running containers; it names the state directory
	// and the cgroup.
	ID string
	// Hostname defaults to the ID (cut to 63 characters).
	Hostname string
	// Image is the image's unpacked rootfs, the overlay's read-only layer.
	Image string
	// Args is the argv. A relative Args[0] without '/' is looked up in the
	// container's PATH (from Env, else defaultPath) inside the container.
	Args []string
	Env  []string
	// Cwd defaults to "/"; it is created when missing.
	Cwd string
	// HostNetwork shares the host's network namespace; otherwise the
	// container gets a new one with only loopback, up.
	HostNetwork bool
	Resources   cgroup.Resources
	// Stdin may be nil (then /dev/null). An *os.File for any of the three
	// is handed to the container as is; other readers and writers are
	// copied through pipes by goroutines that end with the container.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// defaultPath is the PATH used to find Args[0] when Env has none; it is
// Docker's, so images behave as they do there.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// normalize validates s and fills its defaults.
func (s Spec) normalize() (Spec, error) {
	if !idRE.MatchString(s.ID) {
		return s, fmt.Errorf("container id %q: want 1-128 letters, digits, '_', '.', '-' starting with a letter or digit", s.ID)
	}
	if !filepath.IsAbs(s.Image) {
		return s, fmt.Errorf("container %s: image rootfs %q must be an absolute path", s.ID, s.Image)
	}
	if len(s.Args) == 0 || s.Args[0] == "" {
		return s, fmt.Errorf("container %s: no command (Args is empty)", s.ID)
	}
	if s.Cwd == "" {
		s.Cwd = "/"
	}
	if !filepath.IsAbs(s.Cwd) {
		return s, fmt.Errorf("container %s: working directory %q must be absolute", s.ID, s.Cwd)
	}
	if s.Hostname == "" {
		s.Hostname = s.ID
		if len(s.Hostname) > 63 {
			s.Hostname = s.Hostname[:63]
		}
	}
	if len(s.Hostname) > 64 {
		return s, fmt.Errorf("container %s: hostname %q is longer than 64 bytes", s.ID, s.Hostname)
	}
	return s, nil
}

// Exit is how a container's PID 1 ended.
type Exit struct {
	// Code is the exit status, or 128+signal when killed by a signal.
	Code int
	// Signal is the signal that killed it, 0 if it exited.
	Signal syscall.Signal
	// OOMKilled is set when the kernel's OOM killer killed a process of
	// the container's cgroup.
	OOMKilled bool
	// Err is set when the status could not be determined; Code is then -1.
	Err error
}

// initArg is argv[1] of a re-executed container init.
const initArg = "__shoal_init"

// IsInit reports whether this process was started by Start as a container
// init; main must then call InitMain before anything else.
func IsInit(args []string) bool {
	return len(args) > 1 && args[1] == initArg
}

// initConfig is what the parent sends the init over the config pipe.
type initConfig struct {
	Rootfs      string   `json:"rootfs"`
	Hostname    string   `json:"hostname"`
	Args        []string `json:"args"`
	Env         []string `json:"env"`
	Cwd         string   `json:"cwd"`
	HostNetwork bool     `json:"host_network"`
}

// InitError is a failure of the container init before the user's program
// ran, e.g. "exec /app: no such file or directory in the container". It
// unwraps to the errno, so errors.Is(err, fs.ErrNotExist) works.
type InitError struct {
	Msg   string        `json:"msg"`
	Errno syscall.Errno `json:"errno,omitempty"`
}

func (e *InitError) Error() string { return e.Msg }

func (e *InitError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// pathOf returns the PATH in env (the last one wins, as in a shell's
// environment), or defaultPath.
func pathOf(env []string) string {
	p, found := "", false
	for _, kv := range env {
		if len(kv) >= 5 && kv[:5] == "PATH=" {
			p, found = kv[5:], true
		}
	}
	if !found {
		return defaultPath
	}
	return p
}

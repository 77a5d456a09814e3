// Package linux owns the life of a container process on Linux: its
// namespaces, the container init that prepares them, its confinement, and
// start, exec, wait, signal, stop and delete. It uses runtime/cgroup for
// limits, runtime/rootfs for the writable root filesystem and
// runtime/seccomp for the syscall filter; it runs no runc, containerd or
// shell.
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
// which also covers Exec's helper ("__shoal_exec"). The child reads its
// configuration from a pipe and builds the container's filesystem (proc, a
// private /dev, read-only /sys, then read-only binds of the /etc/hosts,
// /etc/hostname and /etc/resolv.conf that Start wrote into the state
// directory, then the Spec's bind mounts, all resolved inside the rootfs),
// pivots into it, masks /proc paths, sets the hostname, brings up
// loopback, resolves the user in the image's /etc/passwd and /etc/group and
// assembles its seccomp filter, all while the parent moves it into the
// cgroup: on cgroup v1 that move waits for a kernel RCU grace period, most
// of a start's time otherwise. Then it waits for the parent's word that the
// move is done (on cgroup v2 it was born in the cgroup), so no user code
// ever runs outside its limits, enters a new cgroup namespace and, with
// ReadOnlyRootfs, remounts / read-only. Last, on its one locked thread, it
// confines itself and execs the user's program, which becomes PID 1 of its
// pid namespace:
//
//  1. rlimits (RLIMIT_NOFILE defaults to DefaultNofile);
//  2. the capabilities outside the container's set leave the bounding set;
//  3. setgroups, setgid, setuid, keeping the permitted set across it;
//  4. effective and permitted = the set (DefaultCapabilities, changed by
//     CapAdd/CapDrop), inheritable and ambient empty; a user other than
//     root loses them all at execve, as in Docker;
//  5. no_new_privs (unless AllowNewPrivileges), then the seccomp filter
//     (unless SeccompUnconfined), so nothing before needs a refused call;
//     without no_new_privs the filter goes in before step 2, while
//     CAP_SYS_ADMIN still allows it.
//
// Errors before the exec travel back on a close-on-exec pipe: EOF means the
// exec happened.
//
// # One-off containers and spares
//
// With Config.OneOffPrefix, a Spec without an ID is a one-off (shoal run):
// the runtime names it and, with Config.SpareIdle, after each one forks a
// spare init ahead of time, in its namespaces and moved into the cgroup the
// next one-off will have. The next one-off with its own network namespace,
// no stdin, no limits and pipes (not files) for its output starts on it
// (waiting for the rest of the move if needed): the spare mounts the
// overlay in its own mount namespace (it is older than the rootfs) and goes
// on as above, with no fork and no Go runtime start left to wait for.
// Spares are made only once a one-off got an overlay (not a copy of the
// image), and one unused for SpareIdle is removed, so a node that runs no
// one-offs holds none. A spare found dead is passed over.
//
// # Exec
//
// Exec runs another program in a running container: same namespaces (pid,
// mount, uts, ipc, net, cgroup), same cgroup, same confinement (steps 1-5),
// optionally on a terminal of the container's /dev/pts. The exec helper is
// this binary again, forked from a thread that entered only the container's
// pid namespace, and so found in the host's filesystem, never in the
// container's. It joins the other namespaces itself: setns into a mount
// namespace is refused to a thread sharing its filesystem context, and Go's
// threads share one, so the helper's locked thread first unshares it
// (CLONE_FS). With a terminal, the helper opens it in the container's devpts
// and sends the master back over a socket (SCM_RIGHTS).
//
// # Caveats
//
//   - Containers are killed with the daemon (parent-death signal). The kernel
//     ties that signal to the thread that forked, so every init is forked
//     from one OS thread kept for the purpose. Exec'd programs have no such
//     signal: they die with the container's pid namespace.
//   - A program running as PID 1 ignores signals it has no handler for, as in
//     Docker; Stop therefore escalates to SIGKILL of the whole cgroup.
//   - No user namespace: the container's root is the host's root, confined
//     by capabilities, seccomp and the mounts. No devices cgroup either,
//     which is why MKNOD is not in the default set; device nodes reach a
//     container only through Mounts.
//   - The seccomp filter is an allow list like Docker's, but it does not
//     widen with added capabilities (runtime/seccomp documents it per
//     architecture).
//   - A read-only bind mount makes its sub-mounts read-only too only on
//     Linux 5.12+ (mount_setattr); older kernels make only the top one so.
//   - Exec needs the *Container of this process (its pid and namespaces):
//     a container started by another process is not reachable yet.
package linux

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"syscall"
	"time"

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
	// OneOffPrefix, when set, lets Start make one-off containers: a Spec
	// without an ID is named OneOffPrefix and 8 hex digits.
	OneOffPrefix string
	// SpareIdle, when positive, makes a spare init for the next one-off
	// after each one and keeps it that long unused (Close removes it).
	SpareIdle time.Duration
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("linux runtime: StateDir %q must be an absolute path", c.StateDir)
	}
	if c.SpareIdle < 0 {
		return fmt.Errorf("linux runtime: SpareIdle %s is negative", c.SpareIdle)
	}
	if c.OneOffPrefix != "" && !ValidID(c.OneOffPrefix+"00000000") {
		return fmt.Errorf("linux runtime: OneOffPrefix %q does not make valid container ids", c.OneOffPrefix)
	}
	return nil
}

// Spec describes one container. Its JSON form is part of runtime/monitor's
// spec.json, which the next daemon reads to adopt a running container: a
// field keeps its name there for good.
type Spec struct {
	// ID is unique among running containers; it names the state directory
	// and the cgroup.
	ID string `json:"id"`
	// Hostname defaults to the ID (cut to 63 characters). It is the
	// container's host name, its /etc/hostname, and resolves to 127.0.1.1
	// in its /etc/hosts.
	Hostname string `json:"hostname,omitempty"`
	// Image is the image's unpacked rootfs, the overlay's read-only layer.
	Image string `json:"image"`
	// Args is the argv. A relative Args[0] without '/' is looked up in the
	// container's PATH (from Env, else defaultPath) inside the container.
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
	// Cwd defaults to "/"; it is created when missing.
	Cwd string `json:"cwd,omitempty"`
	// HostNetwork shares the host's network namespace; otherwise the
	// container gets a new one with only loopback, up.
	HostNetwork bool             `json:"host_network,omitempty"`
	Resources   cgroup.Resources `json:"resources"`
	// Stdin may be nil (then /dev/null). An *os.File for any of the three
	// is handed to the container as is; other readers and writers are
	// copied through pipes by goroutines that end with the container.
	Stdin          io.Reader `json:"-"`
	Stdout, Stderr io.Writer `json:"-"`
	// Forker, when set, forks the init in another process, which becomes
	// its parent and decides its stdio (Stdin, Stdout and Stderr are
	// ignored): a monitor. The Container Start returns then does not
	// reap, stop or delete the container (its Wait never returns); the
	// forker's process does the first three, Runtime.Remove the last.
	Forker Forker `json:"-"`

	// User runs the program as "uid", "uid:gid", "name" or "name:group",
	// names resolved in the container's /etc/passwd and /etc/group;
	// supplementary groups come from /etc/group. Empty means root (0:0).
	// A user other than root ends with no effective capabilities.
	User string `json:"user,omitempty"`
	// CapAdd and CapDrop change the default capability set
	// (DefaultCapabilities): names like "NET_ADMIN" or "CAP_NET_ADMIN",
	// or "ALL". Dropping ALL starts from nothing; adding ALL from every
	// capability; naming one capability in both is an error.
	CapAdd  []string `json:"cap_add,omitempty"`
	CapDrop []string `json:"cap_drop,omitempty"`
	// AllowNewPrivileges leaves no_new_privs off, so setuid binaries and
	// file capabilities work in the container. Off by default.
	AllowNewPrivileges bool `json:"allow_new_privileges,omitempty"`
	// SeccompUnconfined runs without the default seccomp filter
	// (runtime/seccomp), for debugging.
	SeccompUnconfined bool `json:"seccomp_unconfined,omitempty"`
	// Rlimits set resource limits; RLIMIT_NOFILE defaults to
	// DefaultNofile, the others are inherited from the daemon.
	Rlimits []Rlimit `json:"rlimits,omitempty"`
	// ReadOnlyRootfs makes the container's root filesystem read-only.
	// /dev (with /dev/shm and /dev/mqueue) stays writable, and so do
	// writable Mounts; /tmp does not, as in Docker: mount a volume there.
	ReadOnlyRootfs bool `json:"read_only_rootfs,omitempty"`
	// Mounts are bind mounts of host files, directories or device nodes,
	// made after the container's own /proc, /dev and /sys, in order.
	Mounts []Mount `json:"mounts,omitempty"`
}

// Mount binds a host path into the container.
type Mount struct {
	// Source is an absolute host path: a directory (a named volume is
	// just one), a file or a device node such as /dev/ttyUSB0.
	Source string
	// Target is an absolute path in the container. Symlinks in the image
	// are resolved inside the container's root, never out of it; missing
	// parts are created (a file for a non-directory Source).
	Target string
	// ReadOnly makes the mount, and the mounts below it, read-only.
	ReadOnly bool
	// Expect, when set, is the file Source was when the caller checked
	// it: Source is then opened without following a final symlink and
	// mounted only if it is still that file, so a path swapped after the
	// check (a symlink, a rename) is refused rather than mounted.
	Expect *FileID `json:",omitempty"`
	// Populate marks Source as a named volume: while its directory is
	// empty (a new volume), Start first gives it the owner, group and
	// mode of the image's directory at Target and a copy of what the
	// image holds there, as Docker fills a new volume, so a program of
	// the image's user (redis in /var/lib/redis) can write to it.
	Populate bool `json:",omitempty"`
}

// FileID identifies a file on the host: its device and inode numbers.
type FileID struct {
	Dev, Ino uint64
}

// Rlimit is a resource limit, setrlimit(2).
type Rlimit struct {
	// Type is "RLIMIT_NOFILE" or "nofile" (any case), etc.
	Type       string
	Soft, Hard uint64
}

// defaultPath is the PATH used to find Args[0] when Env has none; it is
// Docker's, so images behave as they do there.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ValidID reports whether id may name a container: 1-128 letters, digits,
// '_', '.' and '-', starting with a letter or digit. The id names the
// container's cgroup, hence cgroup's rule plus a length limit.
func ValidID(id string) bool {
	return len(id) <= 128 && cgroup.ValidName(id)
}

// normalize validates s and fills its defaults.
func (s Spec) normalize() (Spec, error) {
	if !ValidID(s.ID) {
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
	// It is written into the container's /etc/hosts: a space, '#' or a
	// newline would change what that file says.
	if !cgroup.ValidName(s.Hostname) {
		return s, fmt.Errorf("container %s: hostname %q: want letters, digits, '_', '.', '-' starting with a letter or digit", s.ID, s.Hostname)
	}
	if err := checkUserSpec(s.User); err != nil {
		return s, fmt.Errorf("container %s: %w", s.ID, err)
	}
	if _, err := capSet(s.CapAdd, s.CapDrop); err != nil {
		return s, fmt.Errorf("container %s: %w", s.ID, err)
	}
	if _, err := rlimits(s.Rlimits); err != nil {
		return s, fmt.Errorf("container %s: %w", s.ID, err)
	}
	for _, m := range s.Mounts {
		if err := m.check(); err != nil {
			return s, fmt.Errorf("container %s: %w", s.ID, err)
		}
	}
	return s, nil
}

func (m Mount) check() error {
	if !filepath.IsAbs(m.Source) {
		return fmt.Errorf("mount %s: source %q must be an absolute host path", m.Target, m.Source)
	}
	if !filepath.IsAbs(m.Target) || filepath.Clean(m.Target) == "/" {
		return fmt.Errorf("mount %s: target must be an absolute path other than /", m.Target)
	}
	return nil
}

// procConfig is how the program of a container, or of an Exec, is run: by
// the init and the exec helper alike.
type procConfig struct {
	Args       []string `json:"args"`
	Env        []string `json:"env"`
	Cwd        string   `json:"cwd"`
	User       string   `json:"user"`
	Caps       uint64   `json:"caps"` // bit n is capability n
	NoNewPrivs bool     `json:"no_new_privs"`
	Seccomp    bool     `json:"seccomp"`
	Rlimits    []rlimit `json:"rlimits"`
}

// procOf is s's program with its security settings; s is normalized.
func procOf(s Spec) procConfig {
	caps, _ := capSet(s.CapAdd, s.CapDrop)
	rl, _ := rlimits(s.Rlimits)
	return procConfig{
		Args: s.Args, Env: s.Env, Cwd: s.Cwd, User: s.User, Caps: caps,
		NoNewPrivs: !s.AllowNewPrivileges, Seccomp: !s.SeccompUnconfined, Rlimits: rl,
	}
}

// argv[1] of a re-executed container init, and of an Exec helper.
const (
	initArg = "__shoal_init"
	execArg = "__shoal_exec"
)

// IsInit reports whether this process was started by Start as a container
// init or by Exec as its helper; main must then call InitMain before
// anything else.
func IsInit(args []string) bool {
	return len(args) > 1 && (args[1] == initArg || args[1] == execArg)
}

// initConfig is what the parent sends the init over the config pipe.
type initConfig struct {
	Rootfs string `json:"rootfs"`
	// Overlay, when set, are the options of the overlay the init mounts
	// at Rootfs itself: a spare init's mount namespace is older than the
	// container's rootfs (rootfs.PrepareOverlay).
	Overlay        string     `json:"overlay,omitempty"`
	Hostname       string     `json:"hostname"`
	HostNetwork    bool       `json:"host_network"`
	ReadOnlyRootfs bool       `json:"read_only_rootfs"`
	Mounts         []Mount    `json:"mounts"`
	Proc           procConfig `json:"proc"`
}

// InitError is a failure of the container init before the user's program
// ran, e.g. "exec /app: no such file or directory in the container". It
// unwraps to the errno, so errors.Is(err, fs.ErrNotExist) works.
type InitError struct {
	Msg   string        `json:"msg"`
	Errno syscall.Errno `json:"errno,omitempty"`
}

func (e *InitError) Error() string { return e.Msg }

// ExitCode is the status a shell gives a program that did not start:
// 127 when it was not found, 126 otherwise (not executable, or the
// container around it could not be made).
func (e *InitError) ExitCode() int {
	if e.Errno == syscall.ENOENT {
		return 127
	}
	return 126
}

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

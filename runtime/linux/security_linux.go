package linux

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/shoal-edge/shoal/runtime/seccomp"
	"golang.org/x/sys/unix"
)

// This file runs in the container init and the exec helper, on their locked
// thread, inside the container's namespaces: it turns the root process into
// the program, with its user, limits and confinement.

// lookupUser resolves p.User with the container's /etc/passwd and /etc/group.
func lookupUser(spec string) (execUser, error) {
	open := func(p string) (*os.File, error) {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return f, err
	}
	pw, err := open("/etc/passwd")
	if err != nil {
		return execUser{}, fmt.Errorf("container init: %w", err)
	}
	gr, err := open("/etc/group")
	if err != nil {
		closeFile(pw)
		return execUser{}, fmt.Errorf("container init: %w", err)
	}
	defer closeFile(pw)
	defer closeFile(gr)
	u, err := resolveUser(spec, readerOf(pw), readerOf(gr))
	if err != nil {
		return execUser{}, &InitError{Msg: "container init: " + err.Error(), Errno: syscall.ENOENT}
	}
	return u, nil
}

func closeFile(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}

// readerOf keeps a nil *os.File a nil io.Reader.
func readerOf(f *os.File) io.Reader {
	if f == nil {
		return nil
	}
	return f
}

// confinement is what execProgram needs that takes more than a system call
// to work out: done before the init may run anything of the container's,
// while its parent may still be moving it into its cgroup.
type confinement struct {
	lastCap int
	filter  *seccomp.Filter // nil without seccomp
}

func prepareConfinement(p procConfig) (confinement, error) {
	c := confinement{lastCap: lastCap()}
	if p.Seccomp {
		f, err := seccomp.Prepare()
		if err != nil {
			return c, fmt.Errorf("container init: %w", err)
		}
		c.filter = f
	}
	return c, nil
}

// execProgram applies p and execs its program; it returns only on failure.
// The order matters: limits and the user's lookup need root; the bounding
// set is dropped while CAP_SETPCAP is still there; KEEPCAPS carries the
// permitted set across setuid; with no_new_privs the seccomp filter comes
// last, so nothing before it needs a syscall it refuses, and without it the
// filter must come before the capability drop that takes CAP_SYS_ADMIN.
func execProgram(p procConfig, u execUser, c confinement) error {
	for _, r := range p.Rlimits {
		// syscall.Setrlimit, not unix's: it also stops syscall.Exec from
		// restoring the NOFILE limit Go found at start.
		lim := syscall.Rlimit{Cur: r.Soft, Max: r.Hard}
		var cur syscall.Rlimit
		if r.Default && syscall.Getrlimit(r.Resource, &cur) == nil && cur.Max < lim.Max {
			if err := syscall.Setrlimit(r.Resource, &lim); errors.Is(err, syscall.EPERM) {
				lim.Max, lim.Cur = cur.Max, min(lim.Cur, cur.Max)
			}
		}
		if err := syscall.Setrlimit(r.Resource, &lim); err != nil {
			return fmt.Errorf("container init: set rlimit %s: %w", "RLIMIT_"+rlimitNames[r.Resource], err)
		}
	}
	env := p.Env
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "HOME=") }) {
		env = append(slices.Clip(env), "HOME="+u.Home)
	}
	if err := os.MkdirAll(p.Cwd, 0o755); err != nil && !errors.Is(err, unix.EROFS) {
		return fmt.Errorf("container init: working directory: %w", err)
	}
	if err := unix.Chdir(p.Cwd); err != nil {
		return fmt.Errorf("container init: chdir %s: %w", p.Cwd, err)
	}
	prog, err := lookPath(p.Args[0], pathOf(env), os.Stat)
	if err != nil {
		return err
	}
	if c.filter != nil && !p.NoNewPrivs {
		if err := c.filter.Install(); err != nil {
			return fmt.Errorf("container init: %w", err)
		}
	}
	if err := dropBounding(p.Caps, c.lastCap); err != nil {
		return err
	}
	if err := ownStdio(u); err != nil {
		return err
	}
	if err := setUser(u); err != nil {
		return err
	}
	if err := setCaps(p.Caps, c.lastCap); err != nil {
		return err
	}
	// A change of user clears the parent-death signal: set it again, then
	// make sure the parent did not die before it was set.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("container init: parent-death signal: %w", err)
	}
	if hostParent() != initParent {
		return fmt.Errorf("container init: its parent (pid %d) has died", initParent)
	}
	if p.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("container init: no_new_privs: %w", err)
		}
		if c.filter != nil {
			if err := c.filter.Install(); err != nil {
				return fmt.Errorf("container init: %w", err)
			}
		}
	}
	err = unix.Exec(prog, p.Args, env)
	if errors.Is(err, unix.ENOENT) {
		// The file exists (lookPath saw it): what is missing is the ELF
		// interpreter of a dynamically linked program.
		return &InitError{Msg: fmt.Sprintf("exec %s: no such file or directory in the container (is its dynamic loader or an interpreter missing from the image?)", prog), Errno: syscall.ENOENT}
	}
	return &InitError{Msg: fmt.Sprintf("exec %s: %v", prog, err), Errno: errnoOf(err)}
}

// lastCap is the highest capability the kernel knows.
func lastCap() int {
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		var n int
		if _, err := fmt.Sscan(string(bytes.TrimSpace(b)), &n); err == nil && n > 0 && n < 64 {
			return n
		}
	}
	n := 0
	for n < 63 {
		if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(n+1), 0, 0, 0); err != nil {
			break
		}
		n++
	}
	return n
}

// dropBounding removes every capability not in caps from the bounding set,
// which execve never lets the program regain.
func dropBounding(caps uint64, last int) error {
	for c := 0; c <= last; c++ {
		if caps&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("container init: drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// ownStdio gives the pipes on stdin, stdout and stderr to u's uid, as
// runc does: a program opens /dev/stdout through /proc/self/fd/1, which
// the kernel checks against the pipe's owner, root (whoever made it), so a
// program of another user configured to log to /dev/stdout (redis-server
// --logfile /dev/stdout as redis) would fail with "permission denied".
// Only anonymous pipes: a file, a named FIFO or a terminal handed over is
// not this container's to change (Exec's terminal is the user's already).
func ownStdio(u execUser) error {
	if u.UID == 0 {
		return nil
	}
	for fd := range 3 {
		var fs unix.Statfs_t
		if err := unix.Fstatfs(fd, &fs); err != nil {
			if errors.Is(err, unix.EBADF) {
				continue
			}
			return fmt.Errorf("container init: stdio %d: %w", fd, err)
		}
		if fs.Type != unix.PIPEFS_MAGIC {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("container init: stdio %d: %w", fd, err)
		}
		if st.Uid == u.UID {
			continue
		}
		if err := unix.Fchown(fd, int(u.UID), -1); err != nil {
			return fmt.Errorf("container init: give stdio %d to uid %d: %w", fd, u.UID, err)
		}
	}
	return nil
}

// setUser switches to u. syscall's Set* act on every thread of the process;
// PR_SET_KEEPCAPS (per thread) keeps this one's permitted set, from which
// setCaps takes the effective set.
func setUser(u execUser) error {
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("container init: keep capabilities: %w", err)
	}
	groups := make([]int, len(u.Groups))
	for i, g := range u.Groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("container init: setgroups %v: %w", u.Groups, err)
	}
	if err := syscall.Setgid(int(u.GID)); err != nil {
		return fmt.Errorf("container init: setgid %d: %w", u.GID, err)
	}
	if err := syscall.Setuid(int(u.UID)); err != nil {
		return fmt.Errorf("container init: setuid %d: %w", u.UID, err)
	}
	return nil
}

// setCaps sets the effective and permitted sets to caps and empties the
// inheritable and ambient ones, as Docker does since 20.10.14
// (CVE-2022-24769). For root the program keeps caps across execve; for
// another user execve leaves it with none, as it would in Docker.
func setCaps(caps uint64, last int) error {
	caps &= uint64(1)<<(last+1) - 1
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(caps), Permitted: uint32(caps)},
		{Effective: uint32(caps >> 32), Permitted: uint32(caps >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("container init: capset: %w", err)
	}
	// Ambient capabilities exist since Linux 4.3; EINVAL before.
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("container init: clear ambient capabilities: %w", err)
	}
	return nil
}

package linux

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/shoal-edge/shoal/internal/fds"
	"golang.org/x/sys/unix"
)

// The init's inherited descriptors (ExtraFiles start at 3).
const (
	configFD = 3 // read: the config (JSON); an init's is followed by placedByte
	errorFD  = 4 // write: an InitError, JSON; closed by a successful exec
)

// InitMain is the container init, or the helper of an Exec: it prepares the
// namespaces it was started in (or joins the container's) and execs the
// user's program. It never returns; on failure it reports to the parent and
// exits with 127 (program not found) or 126.
func InitMain() {
	// First of all: a container's processes may see this one in /proc
	// (an exec helper runs in their pid namespace). Its capabilities keep
	// them out of /proc/PID/{exe,fd,mem} only until it drops to the
	// container's set; from then on, being not dumpable does. The
	// program's execve makes its process dumpable again.
	dumpErr := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	initParent = hostParent()
	// unshare, setns, the capability calls and execve act on the calling
	// thread: keep them on one so the program inherits what they did.
	runtime.LockOSThread()
	// Neither pipe may leak into the program; the error pipe closing at
	// exec is what tells the parent the exec happened.
	unix.CloseOnExec(configFD)
	unix.CloseOnExec(errorFD)
	fds.CloseOnExecAbove(errorFD)
	err := dumpErr
	if err != nil {
		err = fmt.Errorf("make the init not dumpable: %w", err)
	} else if len(os.Args) > 1 && os.Args[1] == execArg {
		err = execHelper(os.NewFile(configFD, "config"))
	} else {
		err = initContainer(os.NewFile(configFD, "config"))
	}
	report(os.NewFile(errorFD, "errors"), err)
	var ie *InitError
	if errors.As(err, &ie) {
		os.Exit(ie.ExitCode())
	}
	os.Exit(126)
}

// initParent is the process that forked this one (a monitor, or the
// daemon), whose death must take the container along, as the host sees its
// pid.
var initParent int

// selfStat is the host's /proc/self/stat of this process, opened at start:
// in its own pid namespace a process's getppid() is 0, and once the
// container's /proc is mounted it shows that namespace's view.
var selfStat *os.File

// hostParent is this process's parent pid in the host's view, or -1.
func hostParent() int {
	if selfStat == nil {
		f, err := os.Open("/proc/self/stat")
		if err != nil {
			return -1
		}
		selfStat = f
	}
	b := make([]byte, 512)
	n, err := selfStat.ReadAt(b, 0)
	if n == 0 && err != nil {
		return -1
	}
	b = b[:n]
	// "pid (comm) state ppid ...": the comm may hold anything but ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}

func report(w *os.File, err error) {
	ie := &InitError{Msg: err.Error()}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		ie.Errno = errno
	}
	var inner *InitError
	if errors.As(err, &inner) {
		ie.Errno = inner.Errno
	}
	_ = json.NewEncoder(w).Encode(ie)
	_ = w.Close()
}

func initContainer(cfgFile *os.File) error {
	var cfg initConfig
	dec := json.NewDecoder(cfgFile)
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("container init: read config: %w", err)
	}
	// Modes we create (devices, mount points) must be exactly as asked.
	unix.Umask(0)
	if err := prepareRootfs(cfg.Rootfs, cfg.Overlay, cfg.HostNetwork); err != nil {
		return err
	}
	for _, m := range cfg.Mounts {
		if err := bindMount(cfg.Rootfs, m); err != nil {
			return err
		}
	}
	if err := pivotRoot(cfg.Rootfs); err != nil {
		return err
	}
	if !cfg.HostNetwork {
		// Before maskPaths makes /proc/sys read-only.
		if err := loopbackUp(); err != nil {
			return err
		}
		if err := netnsSysctls(); err != nil {
			return err
		}
	}
	if err := maskPaths(); err != nil {
		return err
	}
	unix.Umask(0o022)
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fmt.Errorf("container init: set hostname %q: %w", cfg.Hostname, err)
	}
	u, err := lookupUser(cfg.Proc.User)
	if err != nil {
		return err
	}
	conf, err := prepareConfinement(cfg.Proc)
	if err != nil {
		return err
	}
	// The parent moves us into the cgroup while we do all of the above;
	// nothing of the container's runs before it is done.
	if err := awaitPlaced(io.MultiReader(dec.Buffered(), cfgFile)); err != nil {
		return err
	}
	_ = cfgFile.Close()
	// A cgroup namespace rooted at the container's own group (we are in it
	// by now) hides the host's cgroup paths. Kernels without it (< 4.6)
	// answer EINVAL; the container then just sees full paths.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("container init: new cgroup namespace: %w", err)
	}
	if cfg.ReadOnlyRootfs {
		// The working directory is made while we still can.
		if err := os.MkdirAll(cfg.Proc.Cwd, 0o755); err != nil {
			return fmt.Errorf("container init: working directory: %w", err)
		}
		if err := remountReadOnly("/", false); err != nil {
			return fmt.Errorf("container init: read-only rootfs: %w", err)
		}
	}
	return execProgram(cfg.Proc, u, conf)
}

// awaitPlaced reads what follows the config: placedByte once the parent
// has put the init into every hierarchy of its cgroup. Anything else, or
// the pipe closing first, means the parent gave up (or died).
func awaitPlaced(r io.Reader) error {
	var b [1]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return fmt.Errorf("container init: not placed in its cgroup: %w", err)
		}
		switch b[0] {
		case placedByte:
			return nil
		case ' ', '\n', '\t', '\r': // after the JSON value
		default:
			return fmt.Errorf("container init: not placed in its cgroup: unexpected %q after the config", b[0])
		}
	}
}

func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	errors.As(err, &errno)
	return errno
}

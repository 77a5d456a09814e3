// Command prog is the workload of runtime/linux's tests: built static and
// placed at /app of a test image, it reports what it sees from inside the
// container and misbehaves on request.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Info is what -info prints as one JSON line; the test decodes the same shape.
type Info struct {
	Pid             int
	Hostname        string
	Procs           []string
	Ifaces          []string
	LoUp            bool
	SysReadOnly     bool
	Cwd             string
	Args            []string
	Env             []string
	HostFileVisible bool
	Cgroup          string
	DevNull         bool
	KeysMasked      bool
	WriteErr        string

	Uid, Gid int
	Groups   []int
	// From /proc/self/status: CapInh, CapPrm, CapEff, CapBnd, CapAmb,
	// NoNewPrivs, Seccomp.
	Status map[string]string
	// Syscalls maps a probe to its error ("" when it succeeded).
	Syscalls map[string]string
	// KcoreBytes is how much of /proc/kcore could be read; KcoreErr why not.
	KcoreBytes int
	KcoreErr   string
	SysWrite   string // error writing under /sys
	// Writes and Reads map -try-write / -read paths to an error, or for
	// reads to the first bytes in hex.
	Writes, Reads map[string]string
	NofileHard    uint64
	CoreSoft      uint64
	CoreHard      uint64
	IsTTY         bool
	TTYName       string
}

func main() {
	var (
		exit       = flag.Int("exit", 0, "exit with this code")
		sleep      = flag.Duration("sleep", 0, "sleep this long before exiting")
		ignoreTerm = flag.Bool("ignore-term", false, "ignore SIGTERM")
		alloc      = flag.Bool("alloc", false, "allocate memory until killed")
		info       = flag.Bool("info", false, "print an Info as JSON")
		write      = flag.String("write", "", "write a file at this path")
		hostFile   = flag.String("hostfile", "", "report whether this path is visible")
		tryWrite   = flag.String("try-write", "", "comma-separated files to try to write")
		read       = flag.String("read", "", "comma-separated files to read")
		files      = flag.String("files", "", "comma-separated files to print whole, as a JSON object")
		cat        = flag.Bool("cat", false, "copy stdin to stdout, then exit")
		winsize    = flag.Bool("winsize", false, "wait for stdin's terminal to get a size and print it")
	)
	flag.Parse()
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	if *cat {
		io.Copy(os.Stdout, os.Stdin)
		os.Exit(*exit)
	}
	if *winsize {
		printWinsize()
	}
	if *files != "" {
		printFiles(split(*files))
	}
	if *info {
		printInfo(*write, *hostFile, split(*tryWrite), split(*read))
	}
	fmt.Println("ready")
	if *alloc {
		var hog [][]byte
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			hog = append(hog, b)
		}
	}
	time.Sleep(*sleep)
	os.Exit(*exit)
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func printInfo(write, hostFile string, tryWrite, read []string) {
	in := Info{Pid: os.Getpid(), Args: os.Args, Env: os.Environ()}
	in.Hostname, _ = os.Hostname()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if n := e.Name(); n[0] >= '0' && n[0] <= '9' {
			in.Procs = append(in.Procs, n)
		}
	}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		in.Ifaces = append(in.Ifaces, i.Name)
		if i.Name == "lo" {
			in.LoUp = i.Flags&net.FlagUp != 0
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys", &st); err == nil {
		in.SysReadOnly = st.Flags&1 != 0 // ST_RDONLY
	}
	in.Cwd, _ = os.Getwd()
	if hostFile != "" {
		_, err := os.Stat(hostFile)
		in.HostFileVisible = err == nil
	}
	b, _ := os.ReadFile("/proc/self/cgroup")
	in.Cgroup = strings.TrimSpace(string(b))
	in.DevNull = os.WriteFile("/dev/null", []byte("x"), 0) == nil
	if fi, err := os.Stat("/proc/keys"); err == nil {
		in.KeysMasked = fi.Mode()&os.ModeCharDevice != 0 // /dev/null bound over it
	}
	if write != "" {
		if err := os.WriteFile(write, []byte("from the container\n"), 0o644); err != nil {
			in.WriteErr = err.Error()
		}
	}
	in.Uid, in.Gid = os.Getuid(), os.Getgid()
	in.Groups, _ = os.Getgroups()
	in.Status = map[string]string{}
	if f, err := os.Open("/proc/self/status"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			switch k {
			case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp":
				in.Status[k] = strings.TrimSpace(v)
			}
		}
		f.Close()
	}
	in.Syscalls = probes()
	if f, err := os.Open("/proc/kcore"); err != nil {
		in.KcoreErr = err.Error()
	} else {
		n, err := f.Read(make([]byte, 4096))
		in.KcoreBytes, in.KcoreErr = n, errString(err)
		f.Close()
	}
	in.SysWrite = errString(os.WriteFile("/sys/kernel/shoal-probe", []byte("x"), 0o644))
	in.Writes = map[string]string{}
	for _, p := range tryWrite {
		in.Writes[p] = errString(os.WriteFile(p, []byte("x"), 0o644))
	}
	in.Reads = map[string]string{}
	for _, p := range read {
		f, err := os.Open(p)
		if err != nil {
			in.Reads[p] = err.Error()
			continue
		}
		buf := make([]byte, 16)
		n, err := io.ReadFull(f, buf)
		f.Close()
		if err != nil && err != io.ErrUnexpectedEOF {
			in.Reads[p] = err.Error()
			continue
		}
		in.Reads[p] = fmt.Sprintf("%x", buf[:n])
	}
	var rl syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	in.NofileHard = rl.Max
	syscall.Getrlimit(syscall.RLIMIT_CORE, &rl)
	in.CoreSoft, in.CoreHard = rl.Cur, rl.Max
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	in.IsTTY = errno == 0
	in.TTYName, _ = os.Readlink("/proc/self/fd/0")
	json.NewEncoder(os.Stdout).Encode(in)
}

// probes tries system calls a confined container must not make.
func probes() map[string]string {
	out := map[string]string{}
	out["mount"] = errString(syscall.Mount("tmpfs", "/dev/shm", "tmpfs", 0, ""))
	// A Go program has threads: without seccomp the kernel refuses a new
	// user namespace with EINVAL, with it the filter answers EPERM.
	out["unshare-user"] = errString(syscall.Unshare(syscall.CLONE_NEWUSER))
	out["ptrace"] = errString(syscall.PtraceAttach(1))
	// KEYCTL_GET_KEYRING_ID of the session keyring: allowed by the kernel.
	_, _, e := syscall.Syscall(syscall.SYS_KEYCTL, 0, ^uintptr(2), 0)
	out["keyctl"] = errnoString(e)
	// Calls an allow list leaves out. Each is made so that the kernel
	// itself would succeed or answer EINVAL or EFAULT, never EPERM or
	// ENOSYS: those come from the filter.
	if fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0); err != nil {
		out["socket-vsock"] = err.Error()
	} else {
		unix.Close(fd)
		out["socket-vsock"] = ""
	}
	pidfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		out["pidfd_open"] = err.Error()
	}
	// pidfd_getfd of our own stdin: the kernel allows it.
	fd, _, e := unix.Syscall(unix.SYS_PIDFD_GETFD, uintptr(pidfd), 0, 0)
	if out["pidfd_getfd"] = errnoString(e); e == 0 {
		unix.Close(int(fd))
	}
	// Flags no kernel knows: EINVAL, here and below.
	_, _, e = unix.Syscall6(unix.SYS_PROCESS_MADVISE, uintptr(pidfd), 0, 0, unix.MADV_COLD, 1<<31, 0)
	out["process_madvise"] = errnoString(e)
	unix.Close(pidfd)
	root := []byte("/\x00")
	_, _, e = unix.Syscall6(unix.SYS_OPEN_TREE_ATTR, ^uintptr(99), uintptr(unsafe.Pointer(&root[0])), 1<<31, 0, 0, 0)
	out["open_tree_attr"] = errnoString(e)
	_, _, e = unix.Syscall6(unix.SYS_LISTMOUNT, 0, 0, 0, 1<<31, 0, 0)
	out["listmount"] = errnoString(e)
	_, _, e = unix.Syscall6(unix.SYS_STATMOUNT, 0, 0, 0, 1<<31, 0, 0)
	out["statmount"] = errnoString(e)
	// Newer than the filter's syscall tables (Linux 6.17).
	_, _, e = unix.Syscall6(unix.SYS_FILE_GETATTR, ^uintptr(99), 0, 0, 0, 1<<31, 0)
	out["file_getattr"] = errnoString(e)
	// Newer than any kernel.
	_, _, e = unix.Syscall(1000, 0, 0, 0)
	out["syscall-1000"] = errnoString(e)
	return out
}

func errnoString(e syscall.Errno) string {
	if e == 0 {
		return ""
	}
	return e.Error()
}

type winsize struct{ Row, Col, X, Y uint16 }

func printWinsize() {
	deadline := time.Now().Add(10 * time.Second)
	var ws winsize
	for time.Now().Before(deadline) {
		_, _, e := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCGWINSZ, uintptr(unsafe.Pointer(&ws)))
		if e != 0 {
			fmt.Println("winsize:", e)
			return
		}
		if ws.Row != 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("winsize %dx%d\n", ws.Row, ws.Col)
}

// printFiles prints a JSON object mapping each path to its content (up to
// 64 KiB), or to "error: ..." when it cannot be read.
func printFiles(paths []string) {
	out := map[string]string{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			out[p] = "error: " + err.Error()
			continue
		}
		b, err := io.ReadAll(io.LimitReader(f, 64<<10))
		f.Close()
		if err != nil {
			out[p] = "error: " + err.Error()
			continue
		}
		out[p] = string(b)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

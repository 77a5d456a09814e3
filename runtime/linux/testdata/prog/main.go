// Command prog is the workload of runtime/linux's tests: built static and
// placed at /app of a test image, it reports what it sees from inside the
// container and misbehaves on request.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
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
	)
	flag.Parse()
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	if *info {
		printInfo(*write, *hostFile)
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

func printInfo(write, hostFile string) {
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
	json.NewEncoder(os.Stdout).Encode(in)
}

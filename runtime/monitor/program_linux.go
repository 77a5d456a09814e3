package monitor

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/shoal-edge/shoal/internal/sealexe"
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
// shared by all monitors this daemon starts; monitors of an earlier daemon
// keep that daemon's memfd until they exit.
var embeddedProgram = sync.OnceValues(func() (string, error) {
	if err := HasProgram(); err != nil {
		return "", err
	}
	src, err := programFS.Open(programPath)
	if err != nil {
		return "", fmt.Errorf("monitor program: %w", err)
	}
	defer src.Close()
	// Streamed, not read whole: no 1.7 MB copy on the daemon's heap.
	f, err := sealexe.Memfd("shoal-monitor", src)
	if errors.Is(err, sealexe.ErrNoExec) {
		return "", errNoExecMemfd
	}
	if err != nil {
		return "", fmt.Errorf("monitor program: %w", err)
	}
	// Kept open for good (and from the finalizer): exec'd through
	// /proc/self/fd.
	programMemfd = f
	return sealexe.ExecPath(f), nil
})

var programMemfd *os.File

// copyProgram writes the embedded program to w, streamed rather than read
// whole: no 1.7 MB copy on the daemon's heap.
func copyProgram(w io.Writer) error {
	src, err := programFS.Open(programPath)
	if err != nil {
		return err
	}
	defer src.Close()
	_, err = io.Copy(w, src)
	return err
}

// errNoExecMemfd: the kernel refuses executable memfds (vm.memfd_noexec).
var errNoExecMemfd = errors.New("executable memfds are not allowed")

// program is the path monitors are run from: Config.Program, else the
// embedded program's memfd, else (where memfds may not be executed) a copy
// in the state dir, written once per daemon.
func (m *Monitors) program() (string, error) {
	if m.cfg.Program != "" {
		return m.cfg.Program, nil
	}
	path, err := embeddedProgram()
	if errors.Is(err, errNoExecMemfd) {
		return m.programFile()
	}
	return path, err
}

// programFileName is the copy of the program in the state dir: not a valid
// container id, so Adopt passes it over.
const programFileName = ".shoal-monitor"

func (m *Monitors) writeProgramFile() (string, error) {
	path := filepath.Join(m.cfg.StateDir, programFileName)
	tmp, err := os.CreateTemp(m.cfg.StateDir, programFileName+".*")
	if err != nil {
		return "", fmt.Errorf("monitor program: %w", err)
	}
	err = copyProgram(tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o700)
	}
	if err == nil {
		// Running monitors keep the inode they run.
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("monitor program: %w", err)
	}
	return path, nil
}

package seccomp

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Filter is the default filter, assembled for this architecture and ready
// to load.
type Filter struct {
	prog []unix.SockFilter
}

// Prepare assembles the default filter. It is CPU work a container init does
// before it may run anything of the container's, so that Install, after,
// is one system call.
func Prepare() (*Filter, error) {
	insts, err := Assemble(runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble: %w", err)
	}
	if len(raw) == 0 || len(raw) > maxInstructions {
		return nil, fmt.Errorf("seccomp: filter of %d instructions cannot be loaded", len(raw))
	}
	f := &Filter{prog: make([]unix.SockFilter, len(raw))}
	for i, r := range raw {
		f.prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return f, nil
}

// Install loads f for the calling thread (not the whole process: the caller
// locks its OS thread and execs from it). The thread must have no_new_privs
// set or CAP_SYS_ADMIN.
func (f *Filter) Install() error {
	prog := unix.SockFprog{Len: uint16(len(f.prog)), Filter: &f.prog[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(f)
	if errno != 0 {
		return fmt.Errorf("seccomp: load filter: %w", errno)
	}
	return nil
}

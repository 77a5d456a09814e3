// Package exit owns how a container's process ended: the one type the Linux
// runtime, the monitors and the supervision loop hand each other, in a leaf
// package so that the loop (runtime/supervise) needs none of the runtimes
// that produce it.
package exit

import "syscall"

// Status is how a container's PID 1 (or an exec'd program) ended.
type Status struct {
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

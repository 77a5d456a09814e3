// Package seccomp owns shoal's default seccomp filter for containers: an
// allow list. A container may make the system calls of Docker's default
// profile (Allowed); the calls it has no business making (mounting, loading
// kernel code, tracing other processes, changing the host's clock, entering
// or making namespaces, the kernel keyring, vsock sockets, ...) return EPERM
// (Rules); every other number returns ENOSYS, so that a call the list does
// not know, above all one a newer kernel adds, looks to libc and to Go's
// runtime like a call this kernel lacks, and they fall back as they do on
// an older kernel. A process that uses a system-call ABI the filter does not
// know is killed.
//
// # Basics
//
// Assemble builds the BPF program for one GOARCH; Install (Linux) loads it
// for the calling thread, which must then execve: the filter is inherited
// by the program and can never be removed.
//
// The program is one section per ABI the kernel may accept from a process of
// that GOARCH, chosen by seccomp_data.arch:
//
//	amd64:   x86_64 (x32 numbers, bit 30 set, are above every x86_64 one and
//	         get ENOSYS) and i386 (int 0x80)
//	arm64:   aarch64 and arm (AArch32 compat tasks)
//	arm:     arm (EABI)
//	riscv64: riscv64
//
// Any other arch value kills the process. A section is a binary search on
// the syscall number over the ranges that share one answer, so a call costs
// about ten instructions whatever its number; a call whose arguments decide
// (clone, unshare, socket, personality) ends in a few tests of its first
// argument.
//
// Syscall numbers come from github.com/elastic/go-seccomp-bpf's tables
// (x86_64, i386, aarch64, arm). It has no riscv64 table; riscv64 uses the
// generic table (asm-generic/unistd.h) like aarch64, less renameat and plus
// its own riscv_hwprobe and riscv_flush_icache (checked against
// golang.org/x/sys), so its table is derived from aarch64's.
//
// # Caveats
//
//   - A name an ABI does not have (iopl on arm64, socketcall outside i386)
//     is skipped for that ABI.
//   - The filter reads only the syscall number and arguments, never memory:
//     clone3 gets ENOSYS (libc falls back to clone, whose flags it can read),
//     io_uring is refused altogether, and i386's socketcall, whose
//     arguments are in memory, is allowed as in Docker, so an i386 program
//     can make an AF_VSOCK socket through it where the socket call itself
//     is refused.
//   - Unlike Docker's profile the filter does not widen with added
//     capabilities: a container given CAP_SYS_ADMIN still cannot mount.
//     SeccompUnconfined (runtime/linux) runs without it.
//   - A syscall added to the kernel after the tables gets ENOSYS until the
//     tables and Allowed name it.
//   - 32-bit arm's OABI (a kernel option for old binaries) uses the same
//     arch value with other numbers; such kernels are not supported.
package seccomp

import (
	"fmt"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
)

// Rule is one refused system call: always, or only with certain arguments.
// At most one of If and Unless is set.
type Rule struct {
	Name string
	// Errno is returned instead of running the call: EPERM unless ENOSYS.
	Errno Errno
	// If set, the call is refused only when its argument matches.
	If *Arg
	// Unless set, the call is refused unless its argument matches.
	Unless *Arg
	// Why documents the rule.
	Why string
}

// Arg matches one argument of a call by its low 32 bits: every argument
// the filter tests is an int or a flag word whose high half the kernel
// ignores, so testing the whole 64 bits would let a caller set high bits
// the kernel drops and slip past an equality test.
type Arg struct {
	Index int // 0 to 5
	// AnyBit matches when any of its bits is set.
	AnyBit uint32
	// OneOf matches when the argument is one of these values.
	OneOf []uint32
}

// Errno is what a refused call returns.
type Errno uint16

// The errnos the filter returns (the same on every supported arch).
const (
	EPERM  Errno = 1
	ENOSYS Errno = 38
)

// Return values of a seccomp filter (linux/seccomp.h).
const (
	retKillProcess = 0x80000000
	retErrno       = 0x00050000
	retAllow       = 0x7fff0000
)

// maxInstructions is the longest filter the kernel loads (BPF_MAXINSNS).
const maxInstructions = 4096

func (e Errno) ret() uint32 { return retErrno | uint32(e) }

// auditArchRISCV64 is AUDIT_ARCH_RISCV64: EM_RISCV | 64BIT | LE.
const auditArchRISCV64 = 0xc00000f3

// riscv64 returns riscv64's syscall table: the generic one of aarch64,
// which riscv64 shares but for renameat and its two own calls.
func riscv64() *arch.Info {
	names := make(map[string]int, len(arch.AARCH64.SyscallNames)+2)
	numbers := make(map[int]string, len(arch.AARCH64.SyscallNumbers)+2)
	for name, nr := range arch.AARCH64.SyscallNames {
		if name != "renameat" {
			names[name], numbers[nr] = nr, name
		}
	}
	for name, nr := range map[string]int{"riscv_hwprobe": 258, "riscv_flush_icache": 259} {
		names[name], numbers[nr] = nr, name
	}
	return &arch.Info{Name: "riscv64", ID: auditArchRISCV64, SyscallNames: names, SyscallNumbers: numbers}
}

// abis returns the syscall tables of the ABIs a process of goarch may use,
// native first.
func abis(goarch string) ([]*arch.Info, error) {
	switch goarch {
	case "amd64":
		return []*arch.Info{arch.X86_64, arch.I386}, nil
	case "arm64":
		return []*arch.Info{arch.AARCH64, arch.ARM}, nil
	case "arm":
		return []*arch.Info{arch.ARM}, nil
	case "riscv64":
		return []*arch.Info{riscv64()}, nil
	}
	return nil, fmt.Errorf("seccomp: no filter for GOARCH %s (supported: amd64, arm64, arm, riscv64)", goarch)
}

// Offsets in struct seccomp_data. The arguments are 64-bit words; every
// supported arch is little-endian, so an argument's low half comes first.
const (
	offNR   = 0
	offArch = 4
	offArgs = 16
)

// Assemble returns the default filter for goarch as BPF instructions.
func Assemble(goarch string) ([]bpf.Instruction, error) {
	infos, err := abis(goarch)
	if err != nil {
		return nil, err
	}
	allowed, rules := Allowed(), Rules()
	bodies := make([][]bpf.Instruction, len(infos))
	for i, info := range infos {
		bodies[i], err = assembleSection(info, allowed, rules)
		if err != nil {
			return nil, err
		}
	}
	// Dispatch on the arch: "jeq ID, 0, 1; ja section" per ABI, so that
	// sections may be longer than a conditional jump reaches.
	prog := []bpf.Instruction{bpf.LoadAbsolute{Off: offArch, Size: 4}}
	dispatch := len(infos)*2 + 1 // the pairs and the kill
	at := 0                      // offset of section i after the dispatch
	for i, info := range infos {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipFalse: 1},
			// ja counts from the next instruction: the rest of the
			// dispatch, then the sections before this one.
			bpf.Jump{Skip: uint32(dispatch - (2*i + 2) + at)},
		)
		at += len(bodies[i])
	}
	prog = append(prog, bpf.RetConstant{Val: retKillProcess})
	for _, b := range bodies {
		prog = append(prog, b...)
	}
	return prog, nil
}

// assembleSection is one ABI's part: load the number, search its answer.
// It begins with the load and ends in returns.
func assembleSection(info *arch.Info, allowed []string, rules []Rule) ([]bpf.Instruction, error) {
	answers, err := answersFor(info, allowed, rules)
	if err != nil {
		return nil, fmt.Errorf("seccomp: %s: %w", info.Name, err)
	}
	prog := []bpf.Instruction{bpf.LoadAbsolute{Off: offNR, Size: 4}}
	return append(prog, search(ranges(answers))...), nil
}

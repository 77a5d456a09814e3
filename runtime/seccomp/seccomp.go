// Package seccomp owns shoal's default seccomp filter for containers: an
// allow-by-default list that answers EPERM to the system calls a container
// has no business making (mounting, loading kernel code, tracing other
// processes, changing the host's clock, entering or making namespaces, the
// kernel keyring, ...), ENOSYS to clone3 (its flags sit in memory a filter
// cannot read, so libc falls back to clone, whose flags it can), and kills a
// process that uses a system-call ABI the filter does not know.
//
// # Basics
//
// Assemble builds the BPF program for one GOARCH; Install (Linux) loads it
// for the calling thread, which must then execve: the filter is inherited
// by the program and can never be removed. Rules lists what is refused.
//
// The program is one section per ABI the kernel may accept from a process of
// that GOARCH, chosen by seccomp_data.arch:
//
//	amd64:   x86_64 (x32 numbers, bit 30 set, get ENOSYS) and i386 (int 0x80)
//	arm64:   aarch64 and arm (AArch32 compat tasks)
//	arm:     arm (EABI)
//	riscv64: riscv64
//
// Any other arch value kills the process: an allow-by-default list is only
// sound when no second ABI can reach the same kernel without it.
//
// Syscall numbers come from github.com/elastic/go-seccomp-bpf's tables
// (x86_64, i386, aarch64, arm), and the library's assembler resolves the
// jumps. The library has no riscv64 table; riscv64 uses the generic syscall
// table (asm-generic/unistd.h) like aarch64, and every syscall this filter
// names has the same number on both (checked against golang.org/x/sys), so
// its section reuses the aarch64 numbers under AUDIT_ARCH_RISCV64.
//
// # Caveats
//
//   - A syscall name an ABI does not have (iopl on arm64, kexec_file_load on
//     i386) is skipped for that ABI; TestRequired pins the ones that must be
//     present everywhere.
//   - The filter does not look inside clone3's struct or io_uring's rings:
//     clone3 gets ENOSYS and io_uring is refused altogether, as in Docker.
//   - 32-bit arm's OABI (a kernel option for old binaries) uses the same
//     arch value with other numbers; such kernels are not supported.
package seccomp

import (
	"fmt"
	"slices"

	libseccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
)

// Rule is one refused system call: always, or only when its argument
// matches.
type Rule struct {
	Name string
	// Errno is returned instead of running the call: EPERM unless ENOSYS.
	Errno Errno
	// When, if not empty, refuses the call only if all conditions hold.
	When []libseccomp.Condition
	// Why documents the rule.
	Why string
}

// Errno is what a refused call returns.
type Errno uint16

// The errnos the filter returns (the same on every Linux arch).
const (
	EPERM  Errno = 1
	ENOSYS Errno = 38
)

// Namespace flags of clone and unshare. CLONE_NEWTIME is only for unshare
// (and clone3): in clone's flags its bit is part of the exit signal.
const (
	cloneNewNS     = 0x00020000
	cloneNewCgroup = 0x02000000
	cloneNewUTS    = 0x04000000
	cloneNewIPC    = 0x08000000
	cloneNewUser   = 0x10000000
	cloneNewPID    = 0x20000000
	cloneNewNet    = 0x40000000
	cloneNewTime   = 0x00000080

	cloneNamespaces = cloneNewNS | cloneNewCgroup | cloneNewUTS | cloneNewIPC | cloneNewUser | cloneNewPID | cloneNewNet
)

func always(name, why string) Rule { return Rule{Name: name, Errno: EPERM, Why: why} }

// Rules is the default filter's deny list, in the order it is checked.
func Rules() []Rule {
	var rs []Rule
	add := func(why string, names ...string) {
		for _, n := range names {
			rs = append(rs, always(n, why))
		}
	}
	add("mount and unmount filesystems, change the root",
		"mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick",
		"move_mount", "open_tree", "mount_setattr")
	add("load or replace kernel code", "kexec_load", "kexec_file_load", "init_module",
		"finit_module", "delete_module", "create_module", "get_kernel_syms", "query_module", "bpf")
	add("trace or read other processes", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
		"perf_event_open", "userfaultfd")
	add("the kernel keyring is not namespaced", "keyctl", "add_key", "request_key")
	add("host-wide state", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
		"syslog", "vhangup", "nfsservctl", "lookup_dcookie", "uselib", "_sysctl", "fanotify_init")
	add("the clock is the host's", "clock_settime", "clock_settime64", "settimeofday", "stime",
		"adjtimex", "clock_adjtime", "clock_adjtime64")
	add("enter other namespaces", "setns")
	add("file handles bypass the mount namespace", "open_by_handle_at", "name_to_handle_at")
	add("NUMA placement is the host's", "mbind", "move_pages", "migrate_pages")
	add("raw I/O ports and vm86 mode", "iopl", "ioperm", "vm86", "vm86old")
	add("io_uring operations bypass this filter", "io_uring_setup", "io_uring_enter", "io_uring_register")
	rs = append(rs,
		Rule{Name: "unshare", Errno: EPERM, Why: "no new namespaces (a user namespace would regain capabilities)",
			When: []libseccomp.Condition{{Argument: 0, Operation: libseccomp.BitsSet, Value: cloneNamespaces | cloneNewTime}}},
		Rule{Name: "clone", Errno: EPERM, Why: "no new namespaces",
			When: []libseccomp.Condition{{Argument: 0, Operation: libseccomp.BitsSet, Value: cloneNamespaces}}},
		Rule{Name: "clone3", Errno: ENOSYS, Why: "its flags cannot be inspected; libc falls back to clone"},
	)
	// personality: only the personas Docker allows (Linux, UNAME26, with
	// or without ADDR_NO_RANDOMIZE, and the query 0xffffffff).
	var notAllowed []libseccomp.Condition
	for _, v := range []uint64{0x0, 0x8, 0x20000, 0x20008, 0xffffffff} {
		notAllowed = append(notAllowed, libseccomp.Condition{Argument: 0, Operation: libseccomp.NotEqual, Value: v})
	}
	rs = append(rs, Rule{Name: "personality", Errno: EPERM, Why: "exotic personas change the syscall ABI", When: notAllowed})
	return rs
}

// section is one ABI of a GOARCH.
type section struct {
	info *arch.Info
	x32  bool // x86_64: refuse syscall numbers with the x32 bit
}

// auditArchRISCV64 is AUDIT_ARCH_RISCV64: EM_RISCV | 64BIT | LE.
const auditArchRISCV64 = 0xc00000f3

// riscv64 reuses the aarch64 numbers: both use the generic table.
var riscv64 = &arch.Info{
	Name:           "riscv64",
	ID:             auditArchRISCV64,
	SyscallNames:   arch.AARCH64.SyscallNames,
	SyscallNumbers: arch.AARCH64.SyscallNumbers,
}

func sections(goarch string) ([]section, error) {
	switch goarch {
	case "amd64":
		return []section{{info: arch.X86_64, x32: true}, {info: arch.I386}}, nil
	case "arm64":
		return []section{{info: arch.AARCH64}, {info: arch.ARM}}, nil
	case "arm":
		return []section{{info: arch.ARM}}, nil
	case "riscv64":
		return []section{{info: riscv64}}, nil
	}
	return nil, fmt.Errorf("seccomp: no filter for GOARCH %s (supported: amd64, arm64, arm, riscv64)", goarch)
}

// Offsets in struct seccomp_data.
const (
	offNR   = 0
	offArch = 4
)

const x32Bit = 0x40000000

// Assemble returns the default filter for goarch as BPF instructions.
func Assemble(goarch string) ([]bpf.Instruction, error) {
	secs, err := sections(goarch)
	if err != nil {
		return nil, err
	}
	rules := Rules()
	bodies := make([][]bpf.Instruction, len(secs))
	for i, s := range secs {
		bodies[i], err = assembleSection(s, rules)
		if err != nil {
			return nil, err
		}
	}
	// Dispatch on the arch: "jeq ID, 0, 1; ja section" per ABI, so that
	// sections may be longer than a conditional jump reaches.
	prog := []bpf.Instruction{bpf.LoadAbsolute{Off: offArch, Size: 4}}
	dispatch := len(secs)*2 + 1 // the pairs and the kill
	at := 0                     // offset of section i after the dispatch
	for i, s := range secs {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(s.info.ID), SkipFalse: 1},
			// ja counts from the next instruction: the rest of the
			// dispatch, then the sections before this one.
			bpf.Jump{Skip: uint32(dispatch - (2*i + 2) + at)},
		)
		at += len(bodies[i])
	}
	prog = append(prog, bpf.RetConstant{Val: uint32(libseccomp.ActionKillProcess)})
	for _, b := range bodies {
		prog = append(prog, b...)
	}
	return prog, nil
}

// assembleSection is one ABI's part: load the number, check the rules,
// allow. It begins with the load and ends in a return.
func assembleSection(s section, rules []Rule) ([]bpf.Instruction, error) {
	p := libseccomp.NewProgram()
	// Rules are grouped by errno, one action label per group.
	for _, errno := range []Errno{EPERM, ENOSYS} {
		var calls []libseccomp.SyscallWithConditions
		for _, r := range rules {
			if r.Errno != errno {
				continue
			}
			nr, ok := s.info.SyscallNames[r.Name]
			if !ok {
				continue // this ABI has no such call
			}
			c := libseccomp.SyscallWithConditions{Num: uint32(nr)}
			if len(r.When) > 0 {
				c.Conditions = []libseccomp.ArgumentConditions{r.When}
			}
			if slices.ContainsFunc(calls, func(o libseccomp.SyscallWithConditions) bool { return o.Num == c.Num }) {
				return nil, fmt.Errorf("seccomp: %s: syscall %s listed twice", s.info.Name, r.Name)
			}
			calls = append(calls, c)
		}
		if len(calls) == 0 {
			continue
		}
		match, next := p.NewLabel(), p.NewLabel()
		for i, c := range calls {
			c.Assemble(&p, i < len(calls)-1, match, next)
		}
		p.SetLabel(match)
		p.Ret(libseccomp.ActionErrno | libseccomp.Action(errno))
		p.SetLabel(next)
	}
	p.Ret(libseccomp.ActionAllow)
	body, err := p.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble %s: %w", s.info.Name, err)
	}
	head := []bpf.Instruction{bpf.LoadAbsolute{Off: offNR, Size: 4}}
	if s.x32 {
		head = append(head,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32Bit, SkipFalse: 1},
			bpf.RetConstant{Val: uint32(libseccomp.ActionErrno) | uint32(ENOSYS)},
		)
	}
	return append(head, body...), nil
}

// Blocked lists, per ABI of goarch, the syscalls the filter refuses (some
// only with certain arguments), in rule order.
func Blocked(goarch string) (map[string][]string, error) {
	secs, err := sections(goarch)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, s := range secs {
		for _, r := range Rules() {
			if _, ok := s.info.SyscallNames[r.Name]; ok {
				out[s.info.Name] = append(out[s.info.Name], r.Name)
			}
		}
	}
	return out, nil
}

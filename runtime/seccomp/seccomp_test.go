package seccomp

import (
	"encoding/binary"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
)

var goarches = []string{"amd64", "arm64", "arm", "riscv64"}

const (
	wantAllow = retAllow
	wantKill  = retKillProcess
	wantEPERM = retErrno | 1
	wantNOSYS = retErrno | 38
)

// vmFor assembles the filter of goarch and loads it in x/net/bpf's VM.
func vmFor(t *testing.T, goarch string) *bpf.VM {
	t.Helper()
	insts, err := Assemble(goarch)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatalf("%s: %v", goarch, err)
	}
	return vm
}

// run evaluates the filter on a seccomp_data of a little-endian machine.
// The VM loads words in network order, the kernel in native order: each
// 32-bit word is written big-endian at its place.
func run(t *testing.T, vm *bpf.VM, auditArch uint32, nr uint32, args ...uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], nr)
	binary.BigEndian.PutUint32(data[4:], auditArch)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[offArgs+8*i:], uint32(a))       // low word first
		binary.BigEndian.PutUint32(data[offArgs+8*i+4:], uint32(a>>32)) // then the high word
	}
	ret, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(ret)
}

// call is one probe of the filter: a syscall by name with arguments.
type call struct {
	name string
	args []uint64
	want uint32
}

// probes are checked on every ABI that has the call.
var probes = []call{
	// What programs need: Go's runtime, glibc, musl, busybox.
	{"read", nil, wantAllow},
	{"write", nil, wantAllow},
	{"openat", nil, wantAllow},
	{"execve", nil, wantAllow},
	{"getpid", nil, wantAllow},
	{"rseq", nil, wantAllow},
	{"faccessat2", nil, wantAllow},
	{"close_range", nil, wantAllow},
	{"epoll_pwait2", nil, wantAllow},
	{"openat2", nil, wantAllow},
	{"pidfd_open", nil, wantAllow},
	{"pidfd_send_signal", nil, wantAllow},
	{"futex_waitv", nil, wantAllow},
	{"statx", nil, wantAllow},
	{"membarrier", nil, wantAllow},
	{"fchmodat2", nil, wantAllow},
	{"cachestat", nil, wantAllow},
	{"map_shadow_stack", nil, wantAllow},
	{"newfstatat", nil, wantAllow},
	{"fstatat", nil, wantAllow},
	{"fstatat64", nil, wantAllow},
	{"mmap2", nil, wantAllow},
	{"arch_prctl", nil, wantAllow},
	{"set_tls", nil, wantAllow},
	{"riscv_hwprobe", nil, wantAllow},
	{"chroot", nil, wantAllow},
	{"socketcall", nil, wantAllow},
	// Refused outright.
	{"mount", nil, wantEPERM},
	{"ptrace", nil, wantEPERM},
	{"keyctl", nil, wantEPERM},
	{"setns", nil, wantEPERM},
	{"pidfd_getfd", nil, wantEPERM},
	{"process_madvise", nil, wantEPERM},
	{"open_tree_attr", nil, wantEPERM},
	{"clone3", nil, wantNOSYS},
	// Not on the list.
	{"listmount", nil, wantNOSYS},
	{"statmount", nil, wantNOSYS},
	{"lsm_get_self_attr", nil, wantNOSYS},
	// Decided by an argument.
	{"unshare", []uint64{cloneNewUser}, wantEPERM},
	{"unshare", []uint64{cloneNewNS}, wantEPERM},
	{"unshare", []uint64{cloneNewTime}, wantEPERM},
	{"unshare", []uint64{0x200}, wantAllow}, // CLONE_FS
	{"clone", []uint64{0x11}, wantAllow},    // SIGCHLD
	{"clone", []uint64{cloneNewUser | 0x11}, wantEPERM},
	{"clone", []uint64{cloneNewNet}, wantEPERM},
	{"clone", []uint64{0x50f00}, wantAllow}, // a thread
	{"socket", []uint64{2, 1}, wantAllow},   // AF_INET, SOCK_STREAM
	{"socket", []uint64{1, 1}, wantAllow},   // AF_UNIX
	{"socket", []uint64{16, 3}, wantAllow},  // AF_NETLINK
	{"socket", []uint64{afVSOCK, 1}, wantEPERM},
	{"socket", []uint64{1<<32 | afVSOCK, 1}, wantEPERM}, // the kernel reads an int
	{"personality", []uint64{0xffffffff}, wantAllow},
	{"personality", []uint64{0}, wantAllow},
	{"personality", []uint64{0x20008}, wantAllow},
	{"personality", []uint64{0x0040000}, wantEPERM}, // READ_IMPLIES_EXEC
	{"personality", []uint64{0x0800000}, wantEPERM}, // ADDR_LIMIT_3GB
}

func TestFilter(t *testing.T) {
	for _, ga := range goarches {
		t.Run(ga, func(t *testing.T) {
			vm := vmFor(t, ga)
			infos, _ := abis(ga)
			for _, info := range infos {
				id := uint32(info.ID)
				for _, c := range probes {
					nr, ok := info.SyscallNames[c.name]
					if !ok {
						continue
					}
					if got := run(t, vm, id, uint32(nr), c.args...); got != c.want {
						t.Errorf("%s: %s%v = %#x, want %#x", info.Name, c.name, c.args, got, c.want)
					}
				}
				for _, nr := range []uint32{1000, 0x7fffffff, 0xffffffff} {
					if got := run(t, vm, id, nr); got != wantNOSYS {
						t.Errorf("%s: syscall %d = %#x, want ENOSYS", info.Name, nr, got)
					}
				}
			}
			for _, a := range []uint32{0, 0x12345678, uint32(arch.X86_64.ID) ^ 1} {
				if got := run(t, vm, a, 0); got != wantKill {
					t.Errorf("arch %#x: %#x, want kill", a, got)
				}
			}
			if ga == "amd64" {
				if got := run(t, vm, uint32(arch.X86_64.ID), 0x40000000|1); got != wantNOSYS {
					t.Errorf("x32 write: %#x, want ENOSYS", got)
				}
			}
		})
	}
}

// TestEveryNumber runs every number of every ABI, and the numbers around
// them, through the filter and compares with the lists.
func TestEveryNumber(t *testing.T) {
	allowed := map[string]bool{}
	for _, n := range Allowed() {
		allowed[n] = true
	}
	refused := map[string]Rule{}
	for _, r := range Rules() {
		refused[r.Name] = r
	}
	for _, ga := range goarches {
		vm := vmFor(t, ga)
		infos, _ := abis(ga)
		for _, info := range infos {
			var nAllowed, nRefused, nNOSYS int
			top := 0
			for nr := range info.SyscallNumbers {
				top = max(top, nr)
			}
			for nr := range uint32(top + 64) {
				name, known := info.SyscallNumbers[int(nr)]
				want := uint32(wantNOSYS)
				switch r, ok := refused[name]; {
				case !known:
				case allowed[name]:
					want = wantAllow
				case ok && r.If == nil && r.Unless == nil:
					want = r.Errno.ret()
				case ok:
					continue // decided by an argument: see TestFilter
				}
				got := run(t, vm, uint32(info.ID), nr)
				if got != want {
					t.Errorf("%s/%s: %d (%q) = %#x, want %#x", ga, info.Name, nr, name, got, want)
				}
				switch {
				case !known:
				case got == wantAllow:
					nAllowed++
				case got == wantNOSYS:
					nNOSYS++
				default:
					nRefused++
				}
			}
			t.Logf("%s/%s: %d numbers known, %d allowed, %d refused, %d ENOSYS",
				ga, info.Name, len(info.SyscallNumbers), nAllowed, nRefused, nNOSYS)
		}
	}
}

// TestRequired pins the calls every ABI of every supported GOARCH has and
// refuses.
func TestRequired(t *testing.T) {
	required := []string{
		"mount", "umount2", "pivot_root", "kexec_load", "init_module", "finit_module", "delete_module",
		"bpf", "ptrace", "keyctl", "add_key", "request_key", "reboot", "swapon", "swapoff", "setns",
		"clone3", "open_by_handle_at", "name_to_handle_at", "perf_event_open",
		"userfaultfd", "acct", "quotactl", "lookup_dcookie", "clock_settime", "settimeofday",
		"adjtimex", "mbind", "move_pages", "migrate_pages", "kcmp", "process_vm_readv",
		"process_vm_writev", "fanotify_init", "syslog", "vhangup", "nfsservctl", "fsopen", "move_mount",
		"open_tree", "open_tree_attr", "io_uring_setup", "pidfd_getfd", "process_madvise",
	}
	for _, ga := range goarches {
		vm := vmFor(t, ga)
		infos, _ := abis(ga)
		for _, info := range infos {
			for _, name := range required {
				nr, ok := info.SyscallNames[name]
				if !ok {
					t.Errorf("%s/%s has no %s", ga, info.Name, name)
					continue
				}
				if got := run(t, vm, uint32(info.ID), uint32(nr)); got != wantEPERM && got != wantNOSYS {
					t.Errorf("%s/%s: %s = %#x, want refused", ga, info.Name, name, got)
				}
			}
		}
	}
}

// TestNames catches a misspelt name: each must be in some ABI's table.
func TestNames(t *testing.T) {
	tables := []*arch.Info{arch.X86_64, arch.I386, arch.AARCH64, arch.ARM, riscv64()}
	names := Allowed()
	for _, r := range Rules() {
		names = append(names, r.Name)
	}
	for _, n := range names {
		found := false
		for _, info := range tables {
			_, ok := info.SyscallNames[n]
			found = found || ok
		}
		if !found {
			t.Errorf("%s is in no syscall table", n)
		}
	}
}

func TestListedTwice(t *testing.T) {
	_, err := assembleSection(arch.X86_64, []string{"read", "mount"}, Rules())
	if err == nil {
		t.Fatal("mount both allowed and refused: no error")
	}
	t.Log(err)
}

// The riscv64 table is derived from aarch64's; these are riscv64's own
// numbers, from golang.org/x/sys/unix/zsysnum_linux_riscv64.go.
func TestRISCV64Numbers(t *testing.T) {
	rv := riscv64()
	for name, nr := range map[string]int{
		"mount": 40, "umount2": 39, "pivot_root": 41, "ptrace": 117, "unshare": 97, "setns": 268,
		"bpf": 280, "keyctl": 219, "clone": 220, "clone3": 435, "kexec_file_load": 294,
		"open_by_handle_at": 265, "perf_event_open": 241, "userfaultfd": 282, "personality": 92,
		"fstatat": 79, "statx": 291, "rseq": 293, "openat": 56, "read": 63, "socket": 198,
		"riscv_hwprobe": 258, "riscv_flush_icache": 259, "pidfd_getfd": 438, "listmount": 458,
		"open_tree_attr": 467, "futex_waitv": 449, "map_shadow_stack": 453,
	} {
		if got, ok := rv.SyscallNames[name]; !ok || got != nr {
			t.Errorf("riscv64 %s = %d (%v), want %d", name, got, ok, nr)
		}
		if got := rv.SyscallNumbers[nr]; got != name {
			t.Errorf("riscv64 %d = %q, want %s", nr, got, name)
		}
	}
	if nr, ok := rv.SyscallNames["renameat"]; ok {
		t.Errorf("riscv64 has renameat (%d): it has only renameat2", nr)
	}
}

// TestSize keeps the program within what the kernel loads (BPF_MAXINSNS)
// and logs its size per ABI.
func TestSize(t *testing.T) {
	for _, ga := range goarches {
		prog, err := Assemble(ga)
		if err != nil {
			t.Fatal(err)
		}
		if len(prog) > maxInstructions {
			t.Errorf("%s: %d instructions, the kernel loads at most %d", ga, len(prog), maxInstructions)
		}
		infos, _ := abis(ga)
		for _, info := range infos {
			body, err := assembleSection(info, Allowed(), Rules())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s/%s: %d instructions", ga, info.Name, len(body))
		}
		t.Logf("%s: %d instructions in all", ga, len(prog))
	}
}

package seccomp

import (
	"encoding/binary"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
)

var goarches = []string{"amd64", "arm64", "arm", "riscv64"}

// TestRequired pins the calls every ABI of every supported GOARCH refuses.
func TestRequired(t *testing.T) {
	required := []string{
		"mount", "umount2", "pivot_root", "kexec_load", "init_module", "finit_module", "delete_module",
		"bpf", "ptrace", "keyctl", "add_key", "request_key", "reboot", "swapon", "swapoff", "setns",
		"unshare", "clone", "clone3", "open_by_handle_at", "name_to_handle_at", "perf_event_open",
		"userfaultfd", "acct", "quotactl", "lookup_dcookie", "clock_settime", "settimeofday",
		"adjtimex", "personality", "mbind", "move_pages", "migrate_pages", "kcmp", "process_vm_readv",
		"process_vm_writev", "fanotify_init", "syslog", "vhangup", "nfsservctl", "fsopen", "move_mount",
		"open_tree", "io_uring_setup",
	}
	for _, ga := range goarches {
		blocked, err := Blocked(ga)
		if err != nil {
			t.Fatal(err)
		}
		for abi, names := range blocked {
			have := map[string]bool{}
			for _, n := range names {
				have[n] = true
			}
			for _, n := range required {
				if !have[n] {
					t.Errorf("%s/%s: %s not refused", ga, abi, n)
				}
			}
			t.Logf("%s/%s refuses %d calls: %v", ga, abi, len(names), names)
		}
	}
}

// The riscv64 section borrows aarch64's numbers; these are riscv64's own,
// from golang.org/x/sys/unix/zsysnum_linux_riscv64.go.
func TestRISCV64Numbers(t *testing.T) {
	for name, nr := range map[string]int{
		"mount": 40, "umount2": 39, "pivot_root": 41, "ptrace": 117, "unshare": 97, "setns": 268,
		"bpf": 280, "keyctl": 219, "clone": 220, "clone3": 435, "kexec_file_load": 294,
		"open_by_handle_at": 265, "perf_event_open": 241, "userfaultfd": 282, "personality": 92,
	} {
		if got := riscv64.SyscallNames[name]; got != nr {
			t.Errorf("riscv64 %s = %d, want %d", name, got, nr)
		}
	}
}

const (
	retAllow = 0x7fff0000
	retKill  = 0x80000000
	retEPERM = 0x00050000 | 1
	retNOSYS = 0x00050000 | 38
)

// run evaluates the filter in x/net/bpf's VM on a seccomp_data of a
// little-endian machine. The VM loads words in network order, the kernel in
// native order: each 32-bit word is written big-endian at its place.
func run(t *testing.T, vm *bpf.VM, auditArch uint32, nr int, args ...uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], uint32(nr))
	binary.BigEndian.PutUint32(data[4:], auditArch)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[16+8*i:], uint32(a))       // low word first
		binary.BigEndian.PutUint32(data[16+8*i+4:], uint32(a>>32)) // then the high word
	}
	ret, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(ret)
}

func TestFilter(t *testing.T) {
	for _, ga := range goarches {
		t.Run(ga, func(t *testing.T) {
			insts, err := Assemble(ga)
			if err != nil {
				t.Fatal(err)
			}
			vm, err := bpf.NewVM(insts)
			if err != nil {
				t.Fatal(err)
			}
			secs, _ := sections(ga)
			for _, s := range secs {
				id, nr := uint32(s.info.ID), s.info.SyscallNames
				for _, tc := range []struct {
					call string
					args []uint64
					want uint32
				}{
					{"mount", nil, retEPERM},
					{"ptrace", nil, retEPERM},
					{"keyctl", nil, retEPERM},
					{"setns", nil, retEPERM},
					{"clone3", nil, retNOSYS},
					{"read", nil, retAllow},
					{"write", nil, retAllow},
					{"execve", nil, retAllow},
					{"getpid", nil, retAllow},
					{"unshare", []uint64{cloneNewUser}, retEPERM},
					{"unshare", []uint64{cloneNewNS}, retEPERM},
					{"unshare", []uint64{0x200}, retAllow}, // CLONE_FS
					{"clone", []uint64{0x11}, retAllow},    // SIGCHLD
					{"clone", []uint64{cloneNewUser | 0x11}, retEPERM},
					{"clone", []uint64{0x50f00}, retAllow}, // a thread
					{"personality", []uint64{0xffffffff}, retAllow},
					{"personality", []uint64{0x20008}, retAllow},
					{"personality", []uint64{0x0040000}, retEPERM}, // READ_IMPLIES_EXEC
				} {
					n, ok := nr[tc.call]
					if !ok {
						t.Fatalf("%s has no %s", s.info.Name, tc.call)
					}
					if got := run(t, vm, id, n, tc.args...); got != tc.want {
						t.Errorf("%s: %s%v = %#x, want %#x", s.info.Name, tc.call, tc.args, got, tc.want)
					}
				}
			}
			if got := run(t, vm, 0x12345678, 0); got != retKill {
				t.Errorf("unknown arch: %#x, want kill", got)
			}
			if ga == "amd64" {
				if got := run(t, vm, uint32(arch.X86_64.ID), 0x40000000|1); got != retNOSYS {
					t.Errorf("x32 write: %#x, want ENOSYS", got)
				}
			}
		})
	}
}

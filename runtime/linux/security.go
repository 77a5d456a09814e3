package linux

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

// capNames are the capabilities by number (linux/capability.h).
var capNames = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
	"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
	"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
	"LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
	"WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// DefaultCapabilities is what a container's root gets: Docker's default set
// without MKNOD. shoal enforces no devices cgroup, so with MKNOD a
// container's root could make a node for a host disk and open it; devices a
// container needs are bound in with Spec.Mounts instead. CapAdd "MKNOD"
// brings it back, with that risk.
var DefaultCapabilities = []string{
	"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
	"SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
}

// capBit returns the bit of a capability name ("NET_ADMIN", "cap_net_admin").
func capBit(name string) (uint64, error) {
	n := strings.TrimPrefix(strings.ToUpper(name), "CAP_")
	i := slices.Index(capNames, n)
	if i < 0 {
		return 0, fmt.Errorf("unknown capability %q", name)
	}
	return 1 << i, nil
}

// capSet computes the capability set from the defaults and the caller's
// additions and removals, as Docker does: drop ALL starts from nothing, add
// ALL from every capability, then single names are added and dropped.
func capSet(add, drop []string) (uint64, error) {
	all := uint64(1)<<len(capNames) - 1
	var set uint64
	for _, n := range DefaultCapabilities {
		b, _ := capBit(n)
		set |= b
	}
	isAll := func(n string) bool { return strings.EqualFold(n, "ALL") }
	if slices.ContainsFunc(drop, isAll) {
		set = 0
	}
	if slices.ContainsFunc(add, isAll) {
		set = all
	}
	var adds, drops uint64
	for _, n := range add {
		if !isAll(n) {
			b, err := capBit(n)
			if err != nil {
				return 0, fmt.Errorf("CapAdd: %w", err)
			}
			adds |= b
		}
	}
	for _, n := range drop {
		if !isAll(n) {
			b, err := capBit(n)
			if err != nil {
				return 0, fmt.Errorf("CapDrop: %w", err)
			}
			drops |= b
		}
	}
	if both := adds & drops; both != 0 {
		return 0, fmt.Errorf("capability %s is both added and dropped", capNames[bits.TrailingZeros64(both)])
	}
	return (set | adds) &^ drops, nil
}

// rlimit is a resolved Rlimit.
type rlimit struct {
	Resource   int `json:"resource"`
	Soft, Hard uint64
	// Default marks DefaultNofile: where the hard limit cannot be raised
	// (no CAP_SYS_RESOURCE), it is capped at the current one.
	Default bool `json:",omitempty"`
}

// rlimitNames are the resources by number (asm-generic/resource.h; the same
// on amd64, arm64, arm and riscv64).
var rlimitNames = []string{
	"CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS",
	"LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME",
}

const rlimitNofile = 7

// DefaultNofile is a container's RLIMIT_NOFILE unless Spec.Rlimits sets
// one: a soft limit of 1024 keeps select(2) and close-every-fd loops of old
// programs sane, the hard limit lets a program that wants more raise it (Go
// programs do so by themselves). It is systemd's default and Docker's since
// version 25. A daemon without CAP_SYS_RESOURCE gives its own hard limit
// if that is lower.
var DefaultNofile = Rlimit{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 524288}

// rlimits resolves the caller's limits and adds the default NOFILE.
func rlimits(rs []Rlimit) ([]rlimit, error) {
	var out []rlimit
	seen := map[int]bool{}
	for _, r := range append(slices.Clone(rs), DefaultNofile) {
		i := slices.Index(rlimitNames, strings.TrimPrefix(strings.ToUpper(r.Type), "RLIMIT_"))
		if i < 0 {
			return nil, fmt.Errorf("unknown rlimit %q", r.Type)
		}
		if seen[i] {
			if r == DefaultNofile && i == rlimitNofile {
				continue
			}
			return nil, fmt.Errorf("rlimit %s given twice", r.Type)
		}
		if r.Soft > r.Hard {
			return nil, fmt.Errorf("rlimit %s: soft limit %d above hard limit %d", r.Type, r.Soft, r.Hard)
		}
		seen[i] = true
		out = append(out, rlimit{Resource: i, Soft: r.Soft, Hard: r.Hard, Default: len(out) == len(rs)})
	}
	return out, nil
}

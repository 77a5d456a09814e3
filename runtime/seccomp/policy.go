package seccomp

// Allowed lists the system calls a container may make, by the names the
// syscall tables give them; a name an ABI does not have is skipped for it.
// It is Docker's default allow list (moby/profiles, default.json) less what
// Rules refuses, less listmount and statmount, with chroot (CAP_SYS_CHROOT
// is in the default capability set) and the per-architecture calls Docker
// adds for amd64, arm and riscv64.
func Allowed() []string {
	return []string{
		// Files and directories.
		"access", "chdir", "chmod", "chown", "chown32", "chroot", "close", "close_range",
		"copy_file_range", "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2",
		"fadvise64", "fadvise64_64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2",
		"fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "flock", "fstat",
		"fstat64", "fstatat64", "newfstatat", "fstatfs", "fstatfs64", "fsync", "ftruncate",
		"ftruncate64", "futimesat", "getcwd", "getdents", "getdents64", "lchown", "lchown32",
		"link", "linkat", "_llseek", "lseek", "lstat", "lstat64", "mkdir", "mkdirat", "mknod",
		"mknodat", "open", "openat", "openat2", "pipe", "pipe2", "pread64", "preadv",
		"preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
		"readlinkat", "readv", "rename",
		"renameat", "renameat2", "rmdir", "sendfile", "sendfile64", "splice", "stat", "stat64",
		"statfs", "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
		"syncfs", "tee", "truncate", "truncate64", "umask", "unlink", "unlinkat", "utime",
		"utimensat", "utimensat_time64", "utimes", "vmsplice", "write", "writev",
		// aarch64's (and riscv64's) newfstatat, 79, under the name the
		// syscall tables give it: without it Go's os.Stat fails there.
		"fstatat",
		// Extended attributes.
		"fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "getxattrat",
		"lgetxattr", "listxattr", "listxattrat", "llistxattr", "lremovexattr", "lsetxattr",
		"removexattr", "removexattrat", "setxattr", "setxattrat",
		// Waiting for events.
		"epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
		"epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "fanotify_mark",
		"inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "_newselect",
		"pause", "poll", "ppoll", "ppoll_time64", "pselect6", "pselect6_time64", "select",
		"signalfd", "signalfd4", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
		"timerfd_settime", "timerfd_settime64",
		// Asynchronous I/O (io_uring is refused, see Rules).
		"io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
		"io_setup", "io_submit", "ioprio_get", "ioprio_set",
		// Memory.
		"brk", "cachestat", "madvise", "map_shadow_stack", "membarrier", "memfd_create",
		"memfd_secret", "mincore", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
		"mremap", "mseal", "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free",
		"pkey_mprotect", "remap_file_pages",
		// Processes, threads and their identity (clone: see Rules).
		"capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "getcpu",
		"getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
		"getgroups32", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getresgid",
		"getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage",
		"getsid", "gettid", "getuid", "getuid32", "kill", "pidfd_open", "pidfd_send_signal",
		"prctl", "prlimit64", "process_mrelease", "rseq", "sched_getaffinity", "sched_getattr",
		"sched_getparam", "sched_get_priority_max", "sched_get_priority_min",
		"sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
		"sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler",
		"sched_yield", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
		"setgroups", "setgroups32", "setpgid", "setpriority", "setregid", "setregid32",
		"setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
		"setrlimit", "set_robust_list", "setsid", "set_tid_address", "setuid", "setuid32",
		"tgkill", "tkill", "ugetrlimit", "vfork", "wait4", "waitid", "waitpid",
		// A process confining itself further.
		"landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "seccomp",
		// Futexes.
		"futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake",
		// Signals.
		"restart_syscall", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
		"rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
		"rt_tgsigqueueinfo", "sigaltstack", "sigprocmask", "sigreturn",
		// Time, read and timers (setting the clock is refused, see Rules).
		"alarm", "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
		"clock_nanosleep", "clock_nanosleep_time64", "getitimer", "gettimeofday", "nanosleep",
		"setitimer", "time", "timer_create", "timer_delete", "timer_getoverrun",
		"timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "times",
		// Sockets (socket: see Rules). socketcall is i386's multiplexer of
		// them all; its arguments sit in memory the filter cannot read.
		"accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
		"listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send",
		"sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socketcall", "socketpair",
		// System V and POSIX IPC (the container has its own IPC namespace).
		"ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
		"mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl",
		"msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop",
		"semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
		// Miscellaneous reads of the system.
		"getrandom", "ioctl", "sysinfo", "uname",
		// The kernel's return-probe trampoline runs it in traced processes.
		"uretprobe",
		// x86: thread-local storage and segment setup.
		"arch_prctl", "get_thread_area", "modify_ldt", "set_thread_area",
		// arm: its private calls and argument-reordered variants.
		"arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls",
		// riscv64: instruction cache flush (JITs) and CPU feature probe
		// (glibc's ifuncs).
		"riscv_flush_icache", "riscv_hwprobe",
	}
}

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

// afVSOCK is AF_VSOCK, the same on every Linux arch.
const afVSOCK = 40

// Rules lists the system calls the filter refuses, always or with certain
// arguments. A refused call returns EPERM (ENOSYS where libc should fall
// back); a call neither here nor in Allowed returns ENOSYS.
func Rules() []Rule {
	var rs []Rule
	refuse := func(why string, names ...string) {
		for _, n := range names {
			rs = append(rs, Rule{Name: n, Errno: EPERM, Why: why})
		}
	}
	refuse("mount and unmount filesystems, change the root",
		"mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick",
		"move_mount", "open_tree", "open_tree_attr", "mount_setattr")
	refuse("load or replace kernel code", "kexec_load", "kexec_file_load", "init_module",
		"finit_module", "delete_module", "create_module", "get_kernel_syms", "query_module", "bpf")
	refuse("trace, read or steer other processes", "ptrace", "process_vm_readv",
		"process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp", "perf_event_open",
		"userfaultfd")
	refuse("the kernel keyring is not namespaced", "keyctl", "add_key", "request_key")
	refuse("host-wide state", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
		"syslog", "vhangup", "nfsservctl", "lookup_dcookie", "uselib", "_sysctl", "fanotify_init")
	refuse("the clock is the host's", "clock_settime", "clock_settime64", "settimeofday", "stime",
		"adjtimex", "clock_adjtime", "clock_adjtime64")
	refuse("the host name is the container spec's", "sethostname", "setdomainname")
	refuse("enter other namespaces", "setns")
	refuse("file handles bypass the mount namespace", "open_by_handle_at", "name_to_handle_at")
	refuse("NUMA placement is the host's", "mbind", "move_pages", "migrate_pages",
		"get_mempolicy", "set_mempolicy", "set_mempolicy_home_node")
	refuse("raw I/O ports and vm86 mode", "iopl", "ioperm", "vm86", "vm86old")
	refuse("io_uring operations bypass this filter", "io_uring_setup", "io_uring_enter", "io_uring_register")
	return append(rs,
		Rule{Name: "unshare", Errno: EPERM, Why: "no new namespaces (a user namespace would regain capabilities)",
			If: &Arg{Index: 0, AnyBit: cloneNamespaces | cloneNewTime}},
		Rule{Name: "clone", Errno: EPERM, Why: "no new namespaces",
			If: &Arg{Index: 0, AnyBit: cloneNamespaces}},
		Rule{Name: "clone3", Errno: ENOSYS, Why: "its flags cannot be inspected; libc falls back to clone"},
		Rule{Name: "socket", Errno: EPERM, Why: "vsock reaches the hypervisor and is not namespaced",
			If: &Arg{Index: 0, OneOf: []uint32{afVSOCK}}},
		// Docker's personas: Linux, UNAME26, each with or without
		// ADDR_NO_RANDOMIZE, and the query 0xffffffff.
		Rule{Name: "personality", Errno: EPERM, Why: "exotic personas change the syscall ABI",
			Unless: &Arg{Index: 0, OneOf: []uint32{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}}},
	)
}

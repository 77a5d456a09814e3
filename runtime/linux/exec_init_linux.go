package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// This file is the Exec helper, run by InitMain on its locked thread.

// execHelper joins the container's namespaces, sets up the terminal if
// asked, and execs the program like the container init does.
func execHelper(cfgFile *os.File) error {
	var cfg execConfig
	// The parent writes this only after placing us in the cgroup.
	if err := json.NewDecoder(cfgFile).Decode(&cfg); err != nil {
		return fmt.Errorf("exec helper: read config: %w", err)
	}
	_ = cfgFile.Close()
	// setns into a mount namespace needs a filesystem context (root,
	// cwd, umask) no other thread shares; Go's threads share one.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("exec helper: unshare filesystem context: %w", err)
	}
	for _, ns := range cfg.Namespaces {
		if err := unix.Setns(ns.FD, ns.Flag); err != nil {
			return fmt.Errorf("exec helper: enter namespace %#x: %w", ns.Flag, err)
		}
		unix.Close(ns.FD)
	}
	// Entering the mount namespace put this thread at its root: from here
	// on, paths are the container's.
	u, err := lookupUser(cfg.Proc.User)
	if err != nil {
		return err
	}
	if cfg.ConsoleFD != 0 {
		if err := setupConsole(cfg.ConsoleFD, u); err != nil {
			return err
		}
	}
	conf, err := prepareConfinement(cfg.Proc)
	if err != nil {
		return err
	}
	return execProgram(cfg.Proc, u, conf)
}

// setupConsole makes a terminal in the container's devpts, sends its master
// to Exec over sock, and makes the slave this process's controlling
// terminal and stdin, stdout and stderr, owned by the user.
func setupConsole(sock int, u execUser) error {
	fail := func(err error) error { return fmt.Errorf("exec helper: terminal: %w", err) }
	master, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		master, err = unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return fail(err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fail(fmt.Errorf("unlock: %w", err))
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return fail(err)
	}
	slave, err := unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	if err := unix.Fchown(slave, int(u.UID), int(u.GID)); err != nil {
		return fail(err)
	}
	if err := unix.Sendmsg(sock, []byte{0}, unix.UnixRights(master), nil, 0); err != nil {
		return fail(fmt.Errorf("send master: %w", err))
	}
	unix.Close(sock)
	if _, err := unix.Setsid(); err != nil {
		return fail(fmt.Errorf("setsid: %w", err))
	}
	if err := unix.IoctlSetInt(slave, unix.TIOCSCTTY, 0); err != nil {
		return fail(fmt.Errorf("controlling terminal: %w", err))
	}
	for fd := range 3 {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return fail(err)
		}
	}
	return unix.Close(slave)
}

package linux

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-edge/shoal/runtime/cgroup"
	"github.com/shoal-edge/shoal/runtime/exit"
)

// Container is a started container. Its methods are safe for concurrent use.
type Container struct {
	id  string
	cmd *exec.Cmd
	cg  *cgroup.Cgroup
	rt  *Runtime
	log *slog.Logger

	// For Exec: how the container's program runs, whether it has its own
	// network namespace, and the identity of its mount and pid namespaces
	// (to tell its PID 1 from a process that later got the same pid).
	proc        procConfig
	hostNetwork bool
	nsIDs       [2]nsID // mnt, pid

	// mntNS holds the container's mount namespace until Delete. The last
	// process to leave a mount namespace tears it down, and unmounting
	// waits for an (expedited) RCU grace period: 4-5 ms here that would
	// otherwise sit between PID 1's death and its exit status, on the
	// path of every restart. Delete, which runs after, pays it instead.
	mntNS *os.File // guarded by deleteMu

	done chan struct{} // closed by reap once PID 1 has been reaped
	exit exit.Status   // written by reap before done is closed

	deleteMu sync.Mutex // serializes Delete
}

// killTimeout bounds the wait for a SIGKILLed container: only a task stuck in
// uninterruptible sleep takes longer, and then waiting more will not help.
const killTimeout = 30 * time.Second

// reap waits for PID 1 and records its exit; it is the one goroutine that
// calls cmd.Wait and ends when the container's PID 1 does.
func (c *Container) reap() {
	err := c.cmd.Wait()
	ex := exitOf(c.cmd.ProcessState, err)
	if err != nil && c.cmd.ProcessState != nil && !isExitError(err) {
		// The status is known; what failed is copying stdio.
		c.log.Warn("container stdio", "err", err)
	}
	// The OOM counter outlives the processes; read it before Delete.
	if oom, err := c.cg.OOMKilled(); err != nil {
		c.log.Warn("read oom state", "err", err)
	} else {
		ex.OOMKilled = oom
	}
	c.log.Info("container exited", "code", ex.Code, "signal", ex.Signal, "oom_killed", ex.OOMKilled)
	c.exit = ex
	close(c.done)
}

func isExitError(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee)
}

// exitOf turns a wait status into an exit.Status: the exit code, or 128+signal.
func exitOf(ps *os.ProcessState, err error) exit.Status {
	if ps == nil {
		if err == nil {
			err = errors.New("no process state")
		}
		return exit.Status{Code: -1, Err: fmt.Errorf("wait for container: %w", err)}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return exit.Status{Code: ps.ExitCode()}
	}
	if ws.Signaled() {
		return exit.Status{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
	}
	return exit.Status{Code: ws.ExitStatus()}
}

// ID is the container's id.
func (c *Container) ID() string { return c.id }

// Pid is the host pid of the container's PID 1.
func (c *Container) Pid() int { return c.cmd.Process.Pid }

// Wait blocks until the container's PID 1 has exited and returns how. It may
// be called any number of times, from any goroutine.
func (c *Container) Wait() exit.Status {
	<-c.done
	return c.exit
}

// Done is closed when the container has exited, for use in a select.
func (c *Container) Done() <-chan struct{} { return c.done }

// Signal sends sig to the container's PID 1. As PID 1 it receives only
// signals it installed a handler for (SIGKILL excepted).
func (c *Container) Signal(sig syscall.Signal) error {
	if err := c.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("signal container %s: it has exited: %w", c.id, err)
		}
		return fmt.Errorf("signal container %s: %w", c.id, err)
	}
	return nil
}

// Stop sends SIGTERM and, if the container has not exited after grace,
// SIGKILLs every process in its cgroup. It returns once PID 1 has exited.
func (c *Container) Stop(grace time.Duration) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop container %s: %w", c.id, err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C:
	}
	c.log.Info("container ignored SIGTERM, killing it", "grace", grace)
	return c.kill()
}

// kill SIGKILLs the whole container and waits for PID 1.
func (c *Container) kill() error {
	// Killing PID 1 takes its pid namespace with it; the cgroup kill also
	// reaches processes that somehow are not in it.
	_ = c.cmd.Process.Kill()
	if err := c.cg.Kill(); err != nil {
		return fmt.Errorf("kill container %s: %w", c.id, err)
	}
	t := time.NewTimer(killTimeout)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C:
		return fmt.Errorf("kill container %s: pid %d still running %v after SIGKILL", c.id, c.Pid(), killTimeout)
	}
}

// Stats reads the container's resource usage from its cgroup.
func (c *Container) Stats() (cgroup.Stats, error) { return c.cg.Stats() }

// Delete kills the container if it still runs and removes everything it
// had: processes, cgroup, rootfs mount and state directory. Deleting twice
// is not an error.
func (c *Container) Delete() error {
	c.deleteMu.Lock()
	defer c.deleteMu.Unlock()
	select {
	case <-c.done:
	default:
		if err := c.kill(); err != nil {
			return fmt.Errorf("delete container %s: %w", c.id, err)
		}
	}
	c.releaseLocked()
	if err := c.rt.remove(c.id, c.cg); err != nil {
		return fmt.Errorf("delete container %s: %w", c.id, err)
	}
	c.log.Info("container deleted")
	return nil
}

// Release closes what the runtime holds of a container another process
// reaps (Spec.Forker), its mount namespace and process handle: call it once
// that process has reported the exit, before the container's removal.
func (c *Container) Release() {
	c.deleteMu.Lock()
	defer c.deleteMu.Unlock()
	c.releaseLocked()
	_ = c.cmd.Process.Release()
}

func (c *Container) releaseLocked() {
	if c.mntNS != nil {
		_ = c.mntNS.Close()
		c.mntNS = nil
	}
}

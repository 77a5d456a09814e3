package linux

import (
	"fmt"
	"os"
	"os/exec"
	"slices"

	"github.com/shoal-edge/shoal/runtime/cgroup"
)

// Attach returns a Container for a container that another process started
// and still owns (a monitor): enough to Exec into it and read its Stats.
// It does not reap, stop or delete that container, and its Wait never
// returns; s is the spec the container was started with, pid its PID 1.
func (r *Runtime) Attach(s Spec, pid int) (*Container, error) {
	s, err := s.normalize()
	if err != nil {
		return nil, err
	}
	cg, err := cgroup.Load(r.cfg.CgroupParent, s.ID)
	if err != nil {
		return nil, fmt.Errorf("attach to container %s: %w", s.ID, err)
	}
	// The pid must still be the container's: a recycled pid is not in its
	// cgroup.
	pids, err := cg.Procs()
	if err != nil {
		return nil, fmt.Errorf("attach to container %s: %w", s.ID, err)
	}
	if !slices.Contains(pids, pid) {
		return nil, fmt.Errorf("attach to container %s: pid %d is not in it (the container has exited)", s.ID, pid)
	}
	ids, err := nsIDsOf(pid)
	if err != nil {
		return nil, fmt.Errorf("attach to container %s: %w", s.ID, err)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil, err
	}
	return &Container{
		id: s.ID, cmd: &exec.Cmd{Process: p}, cg: cg, rt: r, log: r.log.With("container", s.ID),
		done: make(chan struct{}), proc: procOf(s), hostNetwork: s.HostNetwork, nsIDs: ids,
	}, nil
}

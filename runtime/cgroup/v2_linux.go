package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup2"
)

// v2 drives a group in the unified hierarchy mounted at root.
type v2 struct {
	m   *cgroup2.Manager
	dir string
}

func newV2(root, group string, r Resources) (driver, error) {
	b, err := os.ReadFile(root + "/cgroup.controllers")
	if err != nil {
		return nil, fmt.Errorf("available controllers: %w", err)
	}
	avail := map[string]bool{}
	for _, c := range strings.Fields(string(b)) {
		avail[c] = true
	}
	for name, needed := range map[string]bool{"memory": r.Memory > 0, "cpu": r.CPU > 0, "pids": r.Pids > 0} {
		if needed && !avail[name] {
			return nil, fmt.Errorf("a %s limit needs the %s controller, which %s/cgroup.controllers does not offer", name, name, root)
		}
	}
	// Enable every controller we read from even without a limit: memory
	// gives memory.events (the OOM verdict) and usage, cpu and pids their
	// statistics.
	res := &cgroup2.Resources{}
	if avail["memory"] {
		res.Memory = &cgroup2.Memory{}
		if r.Memory > 0 {
			limit := r.Memory
			res.Memory.Max = &limit
		}
	}
	if avail["cpu"] {
		res.CPU = &cgroup2.CPU{}
		if r.CPU > 0 {
			quota, period := cpuQuota(r.CPU), uint64(cpuPeriod)
			res.CPU.Max = cgroup2.NewCPUMax(&quota, &period)
			weight := cpuWeight(cpuShares(r.CPU))
			res.CPU.Weight = &weight
		}
	}
	if avail["pids"] {
		res.Pids = &cgroup2.Pids{Max: r.Pids}
	}
	m, err := cgroup2.NewManager(root, group, res)
	if err != nil {
		return nil, err
	}
	d := &v2{m: m, dir: root + group}
	if r.Memory > 0 {
		// Forbid swap so the limit means what it says; the file only
		// exists with swap accounting.
		err := os.WriteFile(d.dir+"/memory.swap.max", []byte("0"), 0)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, errors.Join(fmt.Errorf("disable swap: %w", err), d.remove())
		}
	}
	return d, nil
}

func loadV2(root, group string) (driver, error) {
	dir := root + group
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	m, err := cgroup2.Load(group, cgroup2.WithMountpoint(root))
	if err != nil {
		return nil, err
	}
	return &v2{m: m, dir: dir}, nil
}

func (d *v2) add(pid int) error {
	return d.m.AddProc(uint64(pid))
}

func (d *v2) stats() (Stats, error) {
	m, err := d.m.StatFiltered(cgroup2.StatMemory | cgroup2.StatCPU | cgroup2.StatPids)
	if err != nil {
		return Stats{}, err
	}
	var s Stats
	if m.Memory != nil {
		s.MemoryBytes = m.Memory.Usage
	}
	if m.CPU != nil {
		s.CPUNanos = m.CPU.UsageUsec * 1000
	}
	if m.Pids != nil {
		s.Pids = m.Pids.Current
	}
	return s, nil
}

func (d *v2) oomKilled() (bool, error) {
	// memory.events is hierarchical: a kill in a sub-group counts too.
	b, err := os.ReadFile(d.dir + "/memory.events")
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return parseMemoryEvents(b) > 0, nil
}

func (d *v2) procs() ([]int, error) {
	return readProcs(d.dir)
}

func (d *v2) kill() error {
	if _, err := os.Stat(d.dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	// cgroup.kill (Linux 5.14) kills the whole tree atomically, forks
	// included; older kernels get one pass of signals, and Delete loops.
	err := os.WriteFile(d.dir+"/cgroup.kill", []byte("1"), 0)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	pids, err := d.procs()
	if err != nil {
		return err
	}
	return killAll(pids)
}

func (d *v2) remove() error {
	return rmdirTree(d.dir)
}

package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// v1 drives a group that exists once in every mounted v1 hierarchy.
type v1 struct {
	cg   cgroup1.Cgroup
	dirs map[cgroup1.Name]string // the group's directory per hierarchy
}

// v1Subsystems lists the host's hierarchies and the group's directory in
// each of them.
func v1Subsystems(h cgroup1.Hierarchy, group string) ([]cgroup1.Subsystem, map[cgroup1.Name]string, error) {
	subs, err := h()
	if err != nil {
		return nil, nil, fmt.Errorf("v1 hierarchies: %w", err)
	}
	dirs := map[cgroup1.Name]string{}
	for _, s := range subs {
		if p, ok := s.(pather); ok {
			dirs[s.Name()] = p.Path(group)
		}
	}
	return subs, dirs, nil
}

func newV1(h cgroup1.Hierarchy, group string, r Resources) (driver, error) {
	subs, dirs, err := v1Subsystems(h, group)
	if err != nil {
		return nil, err
	}
	need := map[cgroup1.Name]bool{cgroup1.Memory: r.Memory > 0, cgroup1.Cpu: r.CPU > 0, cgroup1.Pids: r.Pids > 0}
	for name, needed := range need {
		if needed && dirs[name] == "" {
			return nil, fmt.Errorf("a %s limit needs the v1 %s hierarchy, which is not mounted", name, name)
		}
	}
	spec := &specs.LinuxResources{}
	if r.Memory > 0 {
		limit := r.Memory
		spec.Memory = &specs.LinuxMemory{Limit: &limit}
		// memsw is memory+swap: setting it to the same limit forbids swap,
		// so the limit means what it says. Without swap accounting the
		// file is absent and there is nothing to forbid.
		root := strings.TrimSuffix(dirs[cgroup1.Memory], group)
		if _, err := os.Stat(root + "/memory.memsw.limit_in_bytes"); err == nil {
			spec.Memory.Swap = &limit
		}
	}
	if r.CPU > 0 {
		quota, period, shares := cpuQuota(r.CPU), uint64(cpuPeriod), cpuShares(r.CPU)
		spec.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period, Shares: &shares}
	}
	if r.Pids > 0 {
		n := r.Pids
		spec.Pids = &specs.LinuxPids{Limit: &n}
	}
	fixed := func() ([]cgroup1.Subsystem, error) { return subs, nil }
	cg, err := cgroup1.New(cgroup1.StaticPath(group), spec, cgroup1.WithHierarchy(fixed))
	if err != nil {
		// New may have created the group in some hierarchies already.
		d := &v1{dirs: dirs}
		if rerr := d.remove(); rerr != nil {
			return nil, errors.Join(err, rerr)
		}
		return nil, err
	}
	return &v1{cg: cg, dirs: dirs}, nil
}

func loadV1(h cgroup1.Hierarchy, group string) (driver, error) {
	subs, dirs, err := v1Subsystems(h, group)
	if err != nil {
		return nil, err
	}
	fixed := func() ([]cgroup1.Subsystem, error) { return subs, nil }
	cg, err := cgroup1.Load(cgroup1.StaticPath(group), cgroup1.WithHierarchy(fixed))
	if errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return nil, ErrNotExist
	}
	if err != nil {
		return nil, err
	}
	return &v1{cg: cg, dirs: dirs}, nil
}

func (d *v1) add(pid int) error {
	return d.cg.Add(cgroup1.Process{Pid: pid})
}

func (d *v1) stats() (Stats, error) {
	m, err := d.cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Stats{}, err
	}
	var s Stats
	if m.Memory != nil && m.Memory.Usage != nil {
		s.MemoryBytes = m.Memory.Usage.Usage
	}
	if m.CPU != nil && m.CPU.Usage != nil {
		s.CPUNanos = m.CPU.Usage.Total
	}
	if m.Pids != nil {
		s.Pids = m.Pids.Current
	}
	return s, nil
}

func (d *v1) oomKilled() (bool, error) {
	dir := d.dirs[cgroup1.Memory]
	if dir == "" {
		return false, nil
	}
	b, err := os.ReadFile(dir + "/memory.oom_control")
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if n, ok := parseOOMControl(b); ok {
		return n > 0, nil
	}
	var v [3]uint64
	for i, f := range []string{"memory.failcnt", "memory.max_usage_in_bytes", "memory.limit_in_bytes"} {
		b, err := os.ReadFile(dir + "/" + f)
		if err != nil {
			return false, err
		}
		if v[i], err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return false, fmt.Errorf("%s/%s: %w", dir, f, err)
		}
	}
	return oomByFailcnt(v[0], v[1], v[2]), nil
}

func (d *v1) procs() ([]int, error) {
	seen := map[int]bool{}
	for _, dir := range d.dirs {
		pids, err := readProcs(dir)
		if err != nil {
			return nil, err
		}
		for _, p := range pids {
			seen[p] = true
		}
	}
	out := make([]int, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Ints(out)
	return out, nil
}

func (d *v1) kill() error {
	pids, err := d.procs()
	if err != nil {
		return err
	}
	return killAll(pids)
}

func (d *v1) remove() error {
	var errs []error
	for _, dir := range d.dirs {
		errs = append(errs, rmdirTree(dir))
	}
	return errors.Join(errs...)
}

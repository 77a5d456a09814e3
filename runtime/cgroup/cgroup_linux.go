package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
)

// ErrNotExist is returned (wrapped) by Load when the group is gone; it is
// fs.ErrNotExist so callers may test either.
var ErrNotExist = fs.ErrNotExist

// Cgroup is one container's control group. Its methods may be called from
// several goroutines; Delete is idempotent.
type Cgroup struct {
	path string // "/<parent>/<id>" inside each hierarchy
	drv  driver
}

// driver is what differs between cgroup v1 and v2.
type driver interface {
	add(pid int) error
	stats() (Stats, error)
	oomKilled() (bool, error)
	// procs lists every process in the group and its descendants; none when
	// the group is gone.
	procs() ([]int, error)
	// kill sends SIGKILL to every process in the group.
	kill() error
	// remove removes the (empty) group; nil when it is already gone.
	remove() error
}

// host says which cgroup layout to drive. Production code detects it; tests
// point it at a specific hierarchy to run both drivers on one machine.
type host struct {
	v2Root string // the cgroup2 mount point when the host is unified
	v1     cgroup1.Hierarchy
}

func detect() (host, error) {
	switch cgroups.Mode() {
	case cgroups.Unified:
		return host{v2Root: "/sys/fs/cgroup"}, nil
	case cgroups.Legacy, cgroups.Hybrid:
		// On hybrid hosts the controllers live in the v1 hierarchies; the
		// cgroup2 mount at /sys/fs/cgroup/unified has none of them.
		return host{v1: cgroup1.Default}, nil
	default:
		return host{}, fmt.Errorf("detect cgroups: no cgroup filesystem mounted at /sys/fs/cgroup")
	}
}

// New creates the group <parent>/<id> with the limits r. It fails if the
// group exists already (the error wraps fs.ErrExist) or if a limit needs a
// controller the host does not offer.
func New(parent, id string, r Resources) (*Cgroup, error) {
	h, err := detect()
	if err != nil {
		return nil, err
	}
	return h.create(parent, id, r)
}

// Load opens the existing group <parent>/<id>, typically to remove the
// leftovers of a previous daemon. A missing group is an error wrapping
// ErrNotExist.
func Load(parent, id string) (*Cgroup, error) {
	h, err := detect()
	if err != nil {
		return nil, err
	}
	return h.load(parent, id)
}

// List returns the ids of the groups under parent, sorted; none when parent
// does not exist.
func List(parent string) ([]string, error) {
	h, err := detect()
	if err != nil {
		return nil, err
	}
	return h.list(parent)
}

func (h host) create(parent, id string, r Resources) (*Cgroup, error) {
	if r.Memory < 0 || r.CPU < 0 || r.Pids < 0 {
		return nil, fmt.Errorf("create cgroup %s/%s: negative limit in %+v", parent, id, r)
	}
	p, err := groupPath(parent, id)
	if err != nil {
		return nil, err
	}
	// The libraries reuse an existing directory; a leftover group (and
	// whatever still runs in it) must not become a new container's.
	if left, err := h.list(parent); err != nil {
		return nil, err
	} else if slices.Contains(left, id) {
		return nil, fmt.Errorf("create cgroup %s: %w (a leftover? Load and Delete it)", p, fs.ErrExist)
	}
	var d driver
	if h.v2Root != "" {
		d, err = newV2(h.v2Root, p, r)
	} else {
		d, err = newV1(h.v1, p, r)
	}
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", p, err)
	}
	return &Cgroup{path: p, drv: d}, nil
}

func (h host) load(parent, id string) (*Cgroup, error) {
	p, err := groupPath(parent, id)
	if err != nil {
		return nil, err
	}
	var d driver
	if h.v2Root != "" {
		d, err = loadV2(h.v2Root, p)
	} else {
		d, err = loadV1(h.v1, p)
	}
	if err != nil {
		return nil, fmt.Errorf("load cgroup %s: %w", p, err)
	}
	return &Cgroup{path: p, drv: d}, nil
}

func (h host) list(parent string) ([]string, error) {
	dirs, err := h.parentDirs(parent)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list cgroups under %s: %w", parent, err)
		}
		for _, e := range ents {
			if e.IsDir() && ValidName(e.Name()) {
				seen[e.Name()] = true
			}
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// RemoveParent removes the parent group once its containers are gone, so a
// stopped daemon leaves no cgroup behind. It fails while a child group
// remains; a missing parent is fine.
func RemoveParent(parent string) error {
	h, err := detect()
	if err != nil {
		return err
	}
	dirs, err := h.parentDirs(parent)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// parentDirs lists the directories of parent: one on v2, one per hierarchy
// on v1.
func (h host) parentDirs(parent string) ([]string, error) {
	if err := checkParent(parent); err != nil {
		return nil, err
	}
	if h.v2Root != "" {
		return []string{h.v2Root + "/" + parent}, nil
	}
	subs, err := h.v1()
	if err != nil {
		return nil, fmt.Errorf("cgroups under %s: v1 hierarchies: %w", parent, err)
	}
	var dirs []string
	for _, s := range subs {
		if p, ok := s.(pather); ok {
			dirs = append(dirs, p.Path("/"+parent))
		}
	}
	return dirs, nil
}

// Path is the group's path inside the cgroup hierarchies, "/<parent>/<id>".
func (c *Cgroup) Path() string { return c.path }

// UnifiedDir is the group's directory when the host is pure cgroup v2, for
// starting a process straight into it (CLONE_INTO_CGROUP); "" on v1 and
// hybrid hosts, where a process can only be moved in with Add.
func (c *Cgroup) UnifiedDir() string {
	if d, ok := c.drv.(*v2); ok {
		return d.dir
	}
	return ""
}

// Procs lists the processes in the group and its sub-groups.
func (c *Cgroup) Procs() ([]int, error) {
	pids, err := c.drv.procs()
	if err != nil {
		return nil, fmt.Errorf("processes of cgroup %s: %w", c.path, err)
	}
	return pids, nil
}

// Add moves the process pid into the group.
func (c *Cgroup) Add(pid int) error {
	if err := c.drv.add(pid); err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, c.path, err)
	}
	return nil
}

// Stats reads the group's usage.
func (c *Cgroup) Stats() (Stats, error) {
	s, err := c.drv.stats()
	if err != nil {
		return Stats{}, fmt.Errorf("stats of cgroup %s: %w", c.path, err)
	}
	return s, nil
}

// OOMKilled says whether the kernel's OOM killer has killed a process of the
// group since it was created. Call it after the container exited and before
// Delete.
func (c *Cgroup) OOMKilled() (bool, error) {
	ok, err := c.drv.oomKilled()
	if err != nil {
		return false, fmt.Errorf("oom state of cgroup %s: %w", c.path, err)
	}
	return ok, nil
}

// Kill sends SIGKILL to every process in the group. Processes forked while it
// runs may survive; Delete repeats it until the group is empty.
func (c *Cgroup) Kill() error {
	if err := c.drv.kill(); err != nil {
		return fmt.Errorf("kill cgroup %s: %w", c.path, err)
	}
	return nil
}

// deleteTimeout bounds how long Delete waits for killed processes to leave;
// a task stuck in uninterruptible sleep (NFS, a dying disk) can hold it.
const deleteTimeout = 10 * time.Second

// Delete kills whatever is left in the group, waits until it is empty and
// removes it. Deleting a deleted group is not an error.
func (c *Cgroup) Delete() error {
	deadline := time.Now().Add(deleteTimeout)
	for {
		pids, err := c.drv.procs()
		if err != nil {
			return fmt.Errorf("delete cgroup %s: %w", c.path, err)
		}
		if len(pids) == 0 {
			err = c.drv.remove()
			if err == nil {
				return nil
			}
			// EBUSY: the last tasks are still exiting; try again below.
		} else {
			err = fmt.Errorf("processes %v still running", pids)
			if kerr := c.drv.kill(); kerr != nil {
				err = kerr
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("delete cgroup %s after %v: %w", c.path, deleteTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pather is implemented by the v1 subsystems that are directories.
type pather interface {
	Path(path string) string
}

// readProcs reads the pids in dir/cgroup.procs and every sub-group below.
// A missing dir yields none.
func readProcs(dir string) ([]int, error) {
	var pids []int
	b, err := os.ReadFile(dir + "/cgroup.procs")
	// ENODEV: the group was removed between open and read (its last
	// process exited and its owner deleted it): as good as gone.
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%s/cgroup.procs: bad pid %q", dir, f)
		}
		pids = append(pids, pid)
	}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENODEV) {
		return nil, err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		sub, err := readProcs(dir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		pids = append(pids, sub...)
	}
	return pids, nil
}

// killAll signals every pid, ignoring those that are already gone.
func killAll(pids []int) error {
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill pid %d: %w", pid, err)
		}
	}
	return nil
}

// rmdirTree removes an empty group directory and any empty sub-groups below
// it, deepest first (rmdir is the only way to remove a cgroup); a missing one
// is fine.
func rmdirTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := rmdirTree(dir + "/" + e.Name()); err != nil {
				return err
			}
		}
	}
	if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

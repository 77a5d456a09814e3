package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// What a start checks before it writes anything, and how a first start
// that fails part-way leaves the data dir as it was.
//
// A data dir without node.json belongs to no node yet. Its first start
// writes the node's material (a new cluster's, or what a join brought),
// Raft's state and the state file, then binds gossip: were it to fail
// there and leave all that behind, the next start would find a complete
// node of a cluster that nobody else knows (and ignore --join). So the
// first start writes DATA/starting before anything else, listing what the
// data dir held; writing node.json at the end of New commits the start,
// and then starting goes. A failed first start removes what it wrote; one
// that was killed is undone by the next start, which finds starting.

const startingFile = "starting"

// startingRecord is DATA/starting.
type startingRecord struct {
	// Kept are the names the data dir held before the first start.
	Kept []string `json:"kept"`
	// Created: the first start made the data dir itself.
	Created bool `json:"created"`
}

// firstStart is a first start under way.
type firstStart struct {
	dir string
	rec startingRecord
}

// dataDirBefore lists the data dir's entries before a start touches it;
// absent is true when there is no data dir yet.
func dataDirBefore(dir string) (names []string, absent bool, err error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read data dir %s: %w", dir, err)
	}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, false, nil
}

// beginFirstStart records what the data dir held, or, when an earlier
// first start was cut short, removes what that one wrote and takes over
// its record. Called with the data dir locked.
func beginFirstStart(dir string, before []string, created bool, log *slog.Logger) (*firstStart, error) {
	path := filepath.Join(dir, startingFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		var rec startingRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			return nil, fmt.Errorf("%s is damaged (%v): it lists what the data dir held before a first start that did not finish; move the data dir away", path, err)
		}
		fs := &firstStart{dir: dir, rec: rec}
		log.Warn("an earlier first start of this data dir did not finish: removing what it wrote", "data_dir", dir)
		if err := fs.removeWritten(false); err != nil {
			return nil, err
		}
		return fs, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	fs := &firstStart{dir: dir, rec: startingRecord{Kept: before, Created: created}}
	data, _ = json.Marshal(fs.rec)
	if err := writeFileAtomic(path, data); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return fs, nil
}

// removeWritten removes what the first start wrote: every entry the data
// dir did not hold before, except its lock (and the record, unless all
// goes).
func (fs *firstStart) removeWritten(all bool) error {
	ents, err := os.ReadDir(fs.dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if slices.Contains(fs.rec.Kept, name) || name == "lock" || !all && name == startingFile {
			continue
		}
		if err := os.RemoveAll(filepath.Join(fs.dir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove what a failed first start wrote to %s: %w", fs.dir, err)
	}
	return nil
}

// undo leaves the data dir as it was before the failed first start: what
// it wrote goes (with the lock file when the start made it, and the data
// dir when the start made that). The lock is still held; lock is closed
// after.
func (fs *firstStart) undo(lock *os.File) error {
	err := fs.removeWritten(true)
	if !slices.Contains(fs.rec.Kept, "lock") {
		os.Remove(filepath.Join(fs.dir, "lock"))
	}
	if lock != nil {
		lock.Close()
	}
	if fs.rec.Created && err == nil {
		// Empty now: Remove, never RemoveAll, so nothing else can go.
		os.Remove(fs.dir)
	}
	return err
}

// commit ends the first start: the node's identity is written, and the
// data dir is the node's from now on.
func (fs *firstStart) commit(id identity) error {
	if err := writeIdentity(fs.dir, id); err != nil {
		return err
	}
	return os.Remove(filepath.Join(fs.dir, startingFile))
}

// dropStaleStarting removes DATA/starting when node.json exists: the start
// that wrote both was killed between committing and removing the record.
func dropStaleStarting(dir string) {
	os.Remove(filepath.Join(dir, startingFile))
}

// ErrNotRoot refuses `shoal up` without root: a node runs containers in
// namespaces, cgroups and mounts of their own.
var ErrNotRoot = errors.New("shoal up must run as root: a node runs containers in namespaces, cgroups and mounts of their own")

// checkRoot refuses a node that could not run a container, before the
// data dir is touched.
func checkRoot() error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("%w (running as uid %d); nothing was written", ErrNotRoot, uid)
	}
	return nil
}

// checkPorts binds the node's ports for a moment: a node whose gossip
// (TCP and UDP) or cluster port is taken fails before it writes anything,
// rather than half-way through its first start. Binding right after can
// still fail (another program may take a port in between); then the first
// start is undone.
func (c *Config) checkPorts() error {
	var msgs []string
	check := func(what, flag string, port int, networks ...string) {
		addr := net.JoinHostPort(c.BindAddr, strconv.Itoa(port))
		var busy []string
		for _, network := range networks {
			err := tryListen(network, addr)
			switch {
			case err == nil:
			case errors.Is(err, syscall.EADDRINUSE):
				busy = append(busy, strings.ToUpper(network))
			default:
				msgs = append(msgs, fmt.Sprintf("%s %s (%s): %v", what, addr, strings.ToUpper(network), err))
			}
		}
		if len(busy) > 0 {
			msgs = append(msgs, fmt.Sprintf("%s %s (%s) is in use by another program or shoal node: stop it, or choose another port with %s",
				what, addr, strings.Join(busy, " and "), flag))
		}
	}
	check("gossip port", "--gossip-port", c.GossipPort, "tcp", "udp")
	check("cluster port", "--port", c.Port, "tcp")
	if len(msgs) > 0 {
		return fmt.Errorf("%s; nothing was written to %s", strings.Join(msgs, "; "), c.DataDir)
	}
	return nil
}

// tryListen binds addr and lets it go again.
func tryListen(network, addr string) error {
	if network == "udp" {
		pc, err := net.ListenPacket(network, addr)
		if err == nil {
			pc.Close()
		}
		return err
	}
	l, err := net.Listen(network, addr)
	if err == nil {
		l.Close()
	}
	return err
}

// dataDirInUse says whether another node holds the data dir's lock,
// without creating anything.
func dataDirInUse(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

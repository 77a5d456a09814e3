package cluster

import (
	"errors"
	"fmt"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/store"
	"golang.org/x/sys/unix"
)

// writeReserve is the free space a node wants on its data dir's file
// system before it takes a write, beside twice the entry: Raft's log
// starts a new 4 MiB segment now and then, and the state file grows in
// steps. A write that found the disk full would fail inside Raft, or
// stall the state machine until there is room (applyStalled); refused
// here, it says what is wrong and where, and the node runs on.
const writeReserve = 16 << 20

// inodeReserve is the free inodes a node wants on its data dir's file
// system before it takes a write.
const inodeReserve = 64

// checkDiskForWrite refuses a write of size bytes when the data dir's
// file system has too little room for it (api.ErrNoSpace).
func (n *Node) checkDiskForWrite(size int) error {
	var st unix.Statfs_t
	if err := unix.Statfs(n.cfg.DataDir, &st); err != nil {
		return nil // not knowing is no reason to refuse
	}
	// Raft's log takes a new file for each segment: a file system out of
	// inodes with blocks to spare failed its segment's rollover, and the
	// log took no entry until the node restarted. Some file systems
	// count no inodes (Files 0): nothing to check there.
	if st.Files > 0 && st.Ffree < inodeReserve {
		return fmt.Errorf("node %s: %w under its data dir %s (%d free inodes, a write needs %d): remove some files there",
			n.id.Name, api.ErrNoSpace, n.cfg.DataDir, st.Ffree, inodeReserve)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	need := int64(writeReserve + 2*size)
	if free >= need {
		return nil
	}
	return fmt.Errorf("node %s: %w under its data dir %s (%s free, a write needs %s): free some space there",
		n.id.Name, api.ErrNoSpace, n.cfg.DataDir, mib(free), mib(need))
}

// unfitToLead says why this node should not lead: its state file takes
// no entry, or its disk has no room for a write (nil when it is fit).
func (n *Node) unfitToLead() error {
	if st, ok := n.store.Stall(); ok {
		return errors.New(stallHealth(n.cfg.DataDir, st))
	}
	return n.checkDiskForWrite(0)
}

// mib is a size in MiB, for messages.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// stallHealth is status's health line while the state file, in dataDir,
// takes no entry.
func stallHealth(dataDir string, st store.Stall) string {
	since := st.Since.UTC().Format(time.RFC3339)
	if errors.Is(st.Err, unix.ENOSPC) {
		return fmt.Sprintf("degraded: disk full: no space left on the disk under the data dir %s since %s: the state file cannot take log entry %d, and this node applies no change until there is room; free some space there",
			dataDir, since, st.Index)
	}
	return fmt.Sprintf("degraded: the state file cannot take log entry %d since %s (%v): this node applies no change until it can", st.Index, since, st.Err)
}

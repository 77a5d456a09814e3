package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// Raft's log on a file system out of inodes: the segment that filled up
// cannot be followed by a new one, raft-wal keeps it sealed and refuses
// every later entry, also once inodes are free again; the node hears of
// it once (and stops, for its next start to open the log anew).
func TestWatchedLogTellsOfASealedSegment(t *testing.T) {
	dir := t.TempDir()
	testutil.MountTmpfs(t, dir, "size=64m,nr_inodes=64")
	wal, err := raftwal.Open(dir, raftwal.WithSegmentSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer wal.Close()
	var told []error
	logs := &watchedLog{WAL: wal, broken: func(err error) { told = append(told, err) }}
	var fill []string
	for i := 0; ; i++ {
		f := filepath.Join(dir, fmt.Sprint("fill", i))
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			break // no inode left
		}
		fill = append(fill, f)
	}
	data := make([]byte, 4<<10)
	var sealed error
	for i := uint64(1); i < 200 && sealed == nil; i++ {
		err := logs.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data})
		switch {
		case errors.Is(err, raftwal.ErrSealed):
			sealed = err
		case err != nil:
			t.Fatalf("entry %d: %v, want raft-wal's ErrSealed or nothing", i, err)
		}
	}
	if sealed == nil {
		t.Fatal("the log took 200 entries of 4 KiB in 64 KiB segments with no inode free")
	}
	for _, f := range fill {
		os.Remove(f)
	}
	last, _ := wal.LastIndex()
	if err := logs.StoreLog(&raft.Log{Index: last + 1, Term: 1, Type: raft.LogCommand, Data: data}); !errors.Is(err, raftwal.ErrSealed) {
		t.Errorf("with inodes free again: %v, want raft-wal's ErrSealed still", err)
	}
	if len(told) != 1 || !errors.Is(told[0], raftwal.ErrSealed) {
		t.Errorf("told %v, want ErrSealed once", told)
	}
}

package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
	"golang.org/x/sys/unix"
)

// A data dir whose file system has blocks to spare but (almost) no free
// inodes takes no write: Raft's log could not start its next segment.
func TestWriteRefusedWithoutInodes(t *testing.T) {
	dir := t.TempDir()
	testutil.MountTmpfs(t, dir, "size=64m,nr_inodes=200")
	n := &Node{cfg: Config{DataDir: dir}, id: identity{Name: "a"}}
	if err := n.checkDiskForWrite(1 << 10); err != nil {
		t.Fatalf("an empty file system: %v", err)
	}
	for i := 0; ; i++ {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		if st.Ffree < inodeReserve/2 {
			break
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := n.checkDiskForWrite(1 << 10)
	if !errors.Is(err, api.ErrNoSpace) || !strings.Contains(err.Error(), "free inodes") || !strings.Contains(err.Error(), dir) {
		t.Errorf("a write with no inodes left: %v, want no space, naming the inodes and %s", err, dir)
	}
}

package linux

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func fileID(t *testing.T, p string) *FileID {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return &FileID{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}
}

// A mount with Expect binds the file the caller checked, or nothing: a
// source swapped for a symlink to /proc or for another directory after the
// check is refused, and nothing of it is mounted.
func TestMountExpect(t *testing.T) {
	rt, cfg := newRuntime(t)
	t.Parallel()
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "hello"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	checked := fileID(t, vol)
	in := runInfo(t, rt, Spec{
		Mounts: []Mount{{Source: vol, Target: "/data", Expect: checked}},
		Args:   []string{"/app", "-info", "-read", "/data/hello"},
	})
	if got := in.Reads["/data/hello"]; got != "6869" {
		t.Fatalf("read /data/hello through the checked mount: %q", got)
	}

	swaps := []struct {
		name string
		swap func(*testing.T)
	}{
		{"symlink to proc", func(t *testing.T) {
			if err := os.Symlink("/proc", vol); err != nil {
				t.Fatal(err)
			}
		}},
		{"another directory", func(t *testing.T) {
			if err := os.Mkdir(vol, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
	}
	// The checked directory moves away; each swap puts something else at
	// its path.
	if err := os.Rename(vol, filepath.Join(dir, "old")); err != nil {
		t.Fatal(err)
	}
	for _, s := range swaps {
		t.Run(s.name, func(t *testing.T) {
			s.swap(t)
			t.Cleanup(func() { os.Remove(vol) })
			id := testID(t)
			c, err := rt.Start(context.Background(), Spec{ID: id, Image: testImage(t),
				Mounts: []Mount{{Source: vol, Target: "/data", Expect: checked}}, Args: []string{"/app", "-sleep", "1h"}})
			if err == nil {
				c.Stop(0)
				c.Wait()
				c.Delete()
				t.Fatalf("a swapped source was mounted")
			}
			if !strings.Contains(err.Error(), vol+" is no longer the file that was checked") {
				t.Fatalf("Start: %v", err)
			}
			assertGone(t, cfg, id)
		})
	}
}

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// A follower whose disk fills up cannot write the entries the leader
// commits into its state file. It must neither crash (it panicked) nor
// skip them: it stops applying, says so in its log and in `status`, keeps
// serving what it has, and applies everything once there is room again.
func TestFollowerDiskFull(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	f.bootstrap("a")
	// b's data dir on a small file system of its own, filled up below.
	f.add("b")
	dir := f.dirs["b"]
	// Unmounted before the lab's teardown, whose kill -9 leaves b's
	// files to read.
	testutil.MountTmpfs(t, dir, "size=64m")
	t.Cleanup(func() {
		f.lab.Stop("b", 30*time.Second)
		// The tmpfs goes before add's cleanup reads b's id.
		var id struct{ ID string }
		if b, err := os.ReadFile(filepath.Join(dir, "node.json")); err == nil && json.Unmarshal(b, &id) == nil && len(id.ID) >= 12 {
			f.cgroups = append(f.cgroups, "shoal-"+id.ID[:12])
		}
	})
	if err := f.lab.Start("b", f.upArgs("b", "b", f.token), nil); err != nil {
		t.Fatal(err)
	}
	f.waitFormed("a", []string{"a", "b"}, []string{"a"}, 30*time.Second)

	fill := filepath.Join(dir, "fill")
	fillUp(t, fill)

	// Apps big enough that b's state file must grow for each: nothing
	// runs them (no node has the label), the leader only records them.
	pad := strings.Repeat("x", 200<<10)
	var spec strings.Builder
	for i := range 4 {
		fmt.Fprintf(&spec, "---\nname: big%d\nimage: 127.0.0.1:1/big:1\nplacement: {labels: {zone: nowhere}}\nenv: {PAD: %s}\n", i, pad)
	}
	file := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(file, []byte(spec.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cli("a", "apply", "-f", file); err != nil {
		t.Fatal(err)
	}
	st, err := f.status("a")
	if err != nil {
		t.Fatal(err)
	}

	// b stays up, applies nothing past the entry it cannot write, and
	// says why.
	var health string
	testutil.WaitFor(t, 30*time.Second, func() error {
		if !f.lab.Running("b") {
			log, _ := os.ReadFile(f.lab.LogPath("b"))
			t.Fatalf("b exited on a full disk; its log:\n%s", log)
		}
		out, err := f.cli("b", "status")
		if err != nil {
			return err
		}
		for _, l := range strings.Split(out, "\n") {
			if h, ok := strings.CutPrefix(l, "health"); ok {
				health = strings.TrimSpace(h)
			}
		}
		if !strings.HasPrefix(health, "degraded: disk full:") {
			return fmt.Errorf("b's status says health %q", health)
		}
		return nil
	})
	want := fmt.Sprintf("degraded: disk full: no space left on the disk under the data dir %s since ", dir)
	if !strings.HasPrefix(health, want) || !strings.Contains(health, "the state file cannot take log entry ") ||
		!strings.HasSuffix(health, "and this node applies no change until there is room; free some space there") {
		t.Errorf("b's status: health\n%s\nwant it to start %q and name the entry", health, want)
	}
	log, _ := os.ReadFile(f.lab.LogPath("b"))
	if !strings.Contains(string(log), "level=ERROR msg=\"disk full: the state file cannot take the next log entry") {
		t.Errorf("b's log does not say its disk is full:\n%s", log)
	}
	if out, err := f.cli("b", "ps"); err != nil || strings.Count(out, "big") == 4 {
		t.Errorf("b's ps while it cannot apply: %v\n%s", err, out)
	}

	// Room again: b applies every entry, and is healthy.
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		bs, err := f.status("b")
		if err != nil {
			return err
		}
		if bs.Health != "healthy" {
			return fmt.Errorf("b's health %q", bs.Health)
		}
		var applied struct {
			Applied uint64 `json:"applied_index"`
		}
		out, err := f.cli("b", "status", "-o", "json")
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &applied); err != nil {
			return err
		}
		if applied.Applied < st.Commit {
			return fmt.Errorf("b applied up to %d, the leader had committed %d", applied.Applied, st.Commit)
		}
		return nil
	})
	out, err := f.cli("b", "ps", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if !strings.Contains(out, fmt.Sprintf(`"app": "big%d"`, i)) {
			t.Errorf("b's ps lacks big%d once it had room:\n%s", i, out)
		}
	}
	if _, err := f.cli("a", "rm", "big0", "big1", "big2", "big3"); err != nil {
		t.Error(err)
	}
}

// fillUp writes path until its file system is full.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// What the last chunk left: the last pages.
	small := make([]byte, 4096)
	for {
		if _, err := f.Write(small); err != nil {
			return
		}
	}
}

package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

// A first start that was killed part-way (DATA/starting still there) left
// the makings of a node behind: the next start removes them, keeps what
// the data dir held before, and starts afresh.
func TestFirstStartCutShortIsUndone(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("notes.txt", "the operator's")
	write(startingFile, `{"kept":["notes.txt"]}`)
	// What a start killed before its commit may leave: half a node.
	write("tls/ca.crt", "not a certificate")
	write("raft/wal/00001.wal", "half a log")
	write("state.db", "not bbolt")

	n, _ := startNode(t, dir, "n1")
	if !n.Bootstrapped() {
		t.Error("the start after a cut-short first start did not bootstrap afresh")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "notes.txt")); err != nil || string(b) != "the operator's" {
		t.Errorf("notes.txt, there before the first start: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, startingFile)); !os.IsNotExist(err) {
		t.Errorf("%s after a start that committed: %v", startingFile, err)
	}
	if id, fresh, err := loadIdentity(dir, ""); err != nil || fresh || id != n.id {
		t.Errorf("node.json after the start: %+v fresh %v, %v; want %+v", id, fresh, err, n.id)
	}
}

package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/api"
)

// A state file cut short refuses to open with an error that names it and
// says what to do; before, bbolt touched the missing pages and the process
// died of SIGBUS. Every length it was cut to is tried, at page bounds and
// between them; the whole file still opens.
func TestOpenDamagedStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// Enough apps that the file grows past its first few pages.
	for i := range 200 {
		a := app(fmt.Sprintf("app%03d", i), "registry.example/img:"+strings.Repeat("x", 100))
		apply(t, s, uint64(i+1), PutApps{Apps: []api.App{a}})
	}
	s.Close()
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(whole) < 8*4096 {
		t.Fatalf("state file of %d bytes: too small to cut", len(whole))
	}
	for _, size := range []int{100, 4096, 8192, 8192 + 100, 12288, len(whole) / 2} {
		if err := os.WriteFile(path, whole[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(path)
		var de *DamagedError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "mv ") {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open of the file cut to %d of %d bytes: %v, want it refused as damaged", size, len(whole), err)
		}
	}
	if err := os.WriteFile(path, whole, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatalf("Open of the whole file: %v", err)
	}
	defer s.Close()
	if apps, _ := s.Apps(); len(apps) != 200 {
		t.Errorf("apps in the whole file: %d, want 200", len(apps))
	}
}

package monitor

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-edge/shoal/runtime/cgroup"
	"github.com/shoal-edge/shoal/runtime/linux"
)

// olderID is the container of testdata/older-daemon: a monitor dir as the
// daemon wrote it when Spec listed linux.Spec's fields again one by one,
// with every field set, for a container that exited while no daemon ran.
const olderID = "web.0.1a2b3c4d"

// olderSpec is what its spec.json says.
var olderSpec = Spec{
	Spec: linux.Spec{
		ID: olderID, Hostname: "web-0", Image: "/var/lib/shoal/images/rootfs/sha256-abc",
		Args: []string{"/app", "-port", "80"}, Env: []string{"PATH=/bin", "A=b"}, Cwd: "/srv", HostNetwork: true,
		Resources: cgroup.Resources{Memory: 64 << 20, CPU: 0.5, Pids: 100},
		User:      "1000:1000", CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"MKNOD"}, AllowNewPrivileges: true,
		SeccompUnconfined: true, Rlimits: []linux.Rlimit{{Type: "nofile", Soft: 1024, Hard: 4096}}, ReadOnlyRootfs: true,
		Mounts: []linux.Mount{
			{Source: "/var/lib/shoal/volumes/data", Target: "/data"},
			{Source: "/dev/ttyUSB0", Target: "/dev/ttyUSB0", ReadOnly: true, Expect: &linux.FileID{Dev: 5, Ino: 77}},
		},
	},
	LogPath: "/var/lib/shoal/logs/web/0.log", LogMaxSize: 1 << 20, LogKeep: 3,
	Labels: map[string]string{"app": "web", "index": "0", "version": "12"},
}

// TestSpecFileOfAnOlderDaemon: the spec.json of a container that an older
// daemon started reads back whole, and this daemon writes the same bytes,
// so that an older daemon adopts its containers after a downgrade too.
func TestSpecFileOfAnOlderDaemon(t *testing.T) {
	name := filepath.Join("testdata", "older-daemon", olderID, specFile)
	var doc specDoc
	if err := readJSON(name, &doc); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(olderSpec, doc.Spec); d != "" {
		t.Errorf("spec read from %s (-want +got):\n%s", name, d)
	}
	old, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, old) {
		t.Errorf("spec.json written now:\n%s\nwritten by the older daemon:\n%s", b, old)
	}
}

// TestAdoptFromAnOlderDaemon: the next daemon adopts the monitor dir an
// older daemon left, and the handle carries the whole spec (exec into an
// adopted container uses it) and the recorded exit.
func TestAdoptFromAnOlderDaemon(t *testing.T) {
	_, cfg := newMonitors(t)
	t.Parallel()
	if err := os.CopyFS(filepath.Join(cfg.StateDir, olderID), os.DirFS(filepath.Join("testdata", "older-daemon", olderID))); err != nil {
		t.Fatal(err)
	}
	hs := adopt(t, cfg, 1)
	if d := cmp.Diff(olderSpec, hs[0].Spec()); d != "" {
		t.Errorf("adopted spec (-want +got):\n%s", d)
	}
	if ex := hs[0].Wait(); ex.Code != 7 || ex.Err != nil {
		t.Errorf("exit %+v, want code 7", ex)
	}
	deleteGone(t, cfg, hs[0])
}

// TestSpecStdioIsTheMonitors: a monitored container's output goes to
// LogPath and its init is forked by the monitor; a Spec that sets what the
// monitor would silently replace is refused.
func TestSpecStdioIsTheMonitors(t *testing.T) {
	ok := Spec{Spec: linux.Spec{ID: "c", Args: []string{"/app"}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v", ok, err)
	}
	withStdout := ok
	withStdout.Stdout = os.Stdout
	if err := withStdout.Validate(); err == nil {
		t.Error("Validate accepted a Spec with Stdout set")
	}
}

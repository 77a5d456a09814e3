package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
	"golang.org/x/sys/unix"
)

// status is an instance as ps -o json shows it, with its error.
type status struct {
	instance
	Error string `json:"error"`
}

// A node binds only the host paths its operator allows: an app asking for
// /proc, /, the data dir or a block device does not start, and ps says
// which path and which flag; an app binding an allowed directory and a
// serial port runs with both mounted.
func TestHostPaths(t *testing.T) {
	allowed := t.TempDir()
	if err := os.WriteFile(filepath.Join(allowed, "site.conf"), []byte("site=edge-7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Dangerous files inside the allowed directory stay refused: a block
	// device (a loop device's numbers), /dev/mem's numbers and a symlink
	// to /proc.
	if err := unix.Mknod(filepath.Join(allowed, "disk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(allowed, "mem"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 1))); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc", filepath.Join(allowed, "proc")); err != nil {
		t.Fatal(err)
	}
	serial := "/dev/ttyS0" // a real serial port where the machine has one
	if _, err := os.Stat(serial); err != nil {
		serial = "/dev/null"
	}

	n := newNode(t, "e2e-hostpath")
	n.args = append(n.args, "--allow-host-path", allowed)
	n.start()
	n.must("image", "import", testutil.TestProgImage(t, "testprog:1"))

	refused := map[string]struct{ volume, want string }{
		"proc": {"/proc:/host", "host path /proc is not allowed on node e2e-hostpath: /proc is guarded (shoal up --allow-host-path /proc)"},
		"root": {"/:/host:ro", "host path / is not allowed on node e2e-hostpath: it is the node's root (shoal up --allow-host-path /)"},
		"data": {n.dataDir + ":/host", fmt.Sprintf("host path %[1]s is not allowed on node e2e-hostpath: %[1]s is guarded (shoal up --allow-host-path %[1]s)", n.dataDir)},
		"disk": {allowed + "/disk:/dev/sda", "is a block device (7:0) (shoal up --allow-host-path " + allowed + "/disk)"},
		"mem":  {allowed + "/mem:/dev/mem", "is a character device of driver mem (1:1)"},
		"link": {allowed + "/proc:/host", "host path " + allowed + "/proc (resolves to /proc) is not allowed"},
	}
	if _, err := os.Stat("/dev/loop0"); err == nil {
		refused["loop"] = struct{ volume, want string }{"/dev/loop0:/dev/loop0", "host path /dev/loop0 is not allowed on node e2e-hostpath: it is a block device (7:0) (shoal up --allow-host-path /dev/loop0)"}
	}
	app := func(name string, args string, volumes ...string) {
		spec := fmt.Sprintf("name: %s\nimage: testprog:1\ncommand: [%s]\nrestart: always\nvolumes: [%s]\n",
			name, args, strings.Join(volumes, ", "))
		n.must("apply", "-f", n.writeFile(name+".yaml", spec))
	}
	for name, r := range refused {
		app(name, `"/app", "-sleep", "1h"`, r.volume)
	}
	app("ok", `"/app", "-cat", "/etc/site/site.conf", "-sleep", "1h"`, allowed+":/etc/site:ro", serial+":/dev/serial0")

	testutil.WaitFor(t, 30*time.Second, func() error {
		var ps []status
		if err := n.json(&ps, "ps", "-o", "json"); err != nil {
			return err
		}
		if len(ps) != len(refused)+1 {
			return fmt.Errorf("ps shows %d instances, want %d", len(ps), len(refused)+1)
		}
		for _, s := range ps {
			if s.App == "ok" {
				if err := running(s.instance); err != nil {
					return fmt.Errorf("%w (error %q)", err, s.Error)
				}
				continue
			}
			if s.State == "running" || s.PID != 0 {
				return fmt.Errorf("instance %s is %s with pid %d, want it refused", s.Instance, s.State, s.PID)
			}
			if want := refused[s.App].want; !strings.Contains(s.Error, want) {
				return fmt.Errorf("instance %s: error %q, want %q", s.Instance, s.Error, want)
			}
		}
		return nil
	})

	// The table says why too: one line per refused instance on stderr.
	out, errOut, code := n.shoal("ps")
	if code != 0 || !strings.Contains(errOut, "root/0: volume /:/host:ro: "+refused["root"].want) || strings.Contains(out, "failed (0)") {
		t.Errorf("shoal ps: exit %d, stdout\n%s\nstderr\n%s\nwant each refused instance failed, its error on stderr", code, out, errOut)
	}

	// The only container on the node is the allowed one.
	mons := monitorsOf(n.dataDir, false)
	if len(mons) != 1 || !strings.Contains(mons[0], "/monitors/ok.0.") {
		t.Fatalf("container monitors: %q, want only the one of ok/0", mons)
	}
	var ok instance
	for _, i := range n.ps() {
		if i.App == "ok" {
			ok = i
		}
	}
	mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", ok.PID))
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{" /etc/site ", " /dev/serial0 "} {
		if !strings.Contains(string(mi), target) {
			t.Errorf("ok/0 has no mount at %s:\n%s", target, mi)
		}
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if out := n.must("logs", "ok"); !strings.Contains(out, "site=edge-7") {
			return fmt.Errorf("logs of ok: %q", out)
		}
		return nil
	})
}

// A node restarted with a narrower --allow-host-path (here none: no host
// path at all) stops the container it adopts that binds a path no longer
// allowed, and does not start it again.
func TestHostPathNarrowedOnRestart(t *testing.T) {
	allowed := t.TempDir()
	n := newNode(t, "e2e-narrow")
	base := slices.Clone(n.args)
	n.args = append(n.args, "--allow-host-path", allowed)
	n.start()
	n.must("image", "import", testutil.TestProgImage(t, "testprog:1"))
	n.must("apply", "-f", n.writeFile("app.yaml", "name: data\nimage: testprog:1\ncommand: [/app, -sleep, 1h]\nrestart: always\nvolumes: ["+allowed+":/data]\n"))
	first := waitInstance(t, n, running)

	n.stop()
	n.args = append(base, "--allow-host-path=none")
	n.start()
	want := fmt.Sprintf("host path %[1]s is not allowed on node e2e-narrow: this node allows only the host paths given to it (shoal up --allow-host-path %[1]s)", allowed)
	testutil.WaitFor(t, 30*time.Second, func() error {
		var ps []status
		if err := n.json(&ps, "ps", "-o", "json"); err != nil {
			return err
		}
		if len(ps) != 1 || ps[0].State == "running" || ps[0].PID != 0 || !strings.Contains(ps[0].Error, want) {
			return fmt.Errorf("ps: %+v, want data/0 refused with %q", ps, want)
		}
		if unix.Kill(first.PID, 0) == nil {
			return fmt.Errorf("the adopted container %d still runs", first.PID)
		}
		return nil
	})
	if mons := monitorsOf(n.dataDir, false); len(mons) != 0 {
		t.Fatalf("container monitors left: %q", mons)
	}
}

package e2e

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// A node's --label is recorded when the cluster first registers it: the
// bootstrap node's and a joining node's alike, seen by `shoal nodes` on
// every node. On a restart --label is ignored (`shoal label` changes
// labels) and the node's log says so.
func TestJoinLabels(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	f.add("a")
	f.admin = "a"
	if err := f.lab.Start("a", append(f.upArgs("a", "a", ""), "--label", "site=core"), nil); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, func() error {
		out, err := f.cli("a", "token")
		if err != nil {
			return err
		}
		f.token, err = tokenOf(out)
		return err
	})
	f.add("b")
	if err := f.lab.Start("b", append(f.upArgs("b", "b", f.token), "--label", "site=edge", "--label", "tier=2"), nil); err != nil {
		t.Fatal(err)
	}
	for _, asker := range []string{"a", "b"} {
		f.waitLabel(asker, "a", "site", "core", 20*time.Second)
		f.waitLabel(asker, "b", "site", "edge", 20*time.Second)
		f.waitLabel(asker, "b", "tier", "2", 20*time.Second)
	}

	// A restart with another --label leaves the recorded labels alone.
	if err := f.lab.Stop("b", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := f.lab.Start("b", append(f.upArgs("b", "b", ""), "--label", "site=moved"), nil); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		log, err := os.ReadFile(f.lab.LogPath("b"))
		if err != nil {
			return err
		}
		if !strings.Contains(string(log), "--label is ignored on a restart") {
			return errors.New("the restarted node's log does not say --label is ignored")
		}
		_, err = f.cli("b", "status")
		return err
	})
	f.mustAdminCLI("a", "label", "b", "after=restart")
	f.waitLabel("b", "b", "after", "restart", 20*time.Second)
	f.waitLabel("b", "b", "site", "edge", time.Second)
}

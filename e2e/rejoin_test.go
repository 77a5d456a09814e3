package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// rejoinWithin bounds how long a restarted node may be missing from gossip
// once it runs and can reach the others: a start (a second or two on a
// loaded machine), a gossip exchange, memberlist's suspicion timeout
// (about 5 s) should the others still hold the node's old self, and one
// retry of a missing peer (at most 10 s apart).
const rejoinWithin = 20 * time.Second

// joinTimeout is how long memberlist waits for a TCP connection to a
// member (its TCPTimeout), and a little more.
const joinTimeout = 11 * time.Second

// Two voters of a fleet of three voters and a non-voter stop at once and
// start again: every node sees every other alive within gossip's
// timeouts, and ps shows no instance unknown.
//
// In the second round the two reach each other before they reach the
// others (a cut that heals a moment after their start; under load the
// same order came by chance). Each then saw the other alive and took
// itself for joined, while the others held both for gone: nothing made
// either side exchange state with the other again, and the fleet stayed
// split in two, Raft working across.
func TestTwoNodesRestartAtOnce(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	f.bootstrap("a")
	f.join("b")
	f.join("c")
	f.waitFormed("a", []string{"a", "b", "c"}, []string{"a", "b", "c"}, 30*time.Second)
	f.join("d")
	all := []string{"a", "b", "c", "d"}
	f.waitFormed("a", all, []string{"a", "b", "c"}, 30*time.Second)
	f.importTestprog(t, all...)
	spec := filepath.Join(t.TempDir(), "app.yaml")
	os.WriteFile(spec, []byte(`name: everywhere
image: testprog:1
command: ["/app", "-sleep", "1h"]
mode: global
`), 0o644)
	f.mustCLI(f.admin, "apply", "-f", spec)
	t.Cleanup(func() {
		f.lab.Heal()
		for _, n := range all {
			if !f.lab.Running(n) && f.lab.Restart(n) != nil {
				return
			}
		}
		err := testutil.Poll(60*time.Second, func() error {
			_, err := f.cli("c", "rm", "everywhere")
			return err
		})
		if err != nil {
			t.Errorf("rm everywhere: %v", err)
		}
		f.waitNothingLeft(t, 30*time.Second, all...)
	})
	allRunning := func(asker string) error {
		out, err := f.cli(asker, "ps", "-o", "json")
		if err != nil {
			return err
		}
		var list []instance
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return err
		}
		var bad []string
		for _, i := range list {
			if i.State != "running" {
				bad = append(bad, i.Instance+"@"+i.Node+"="+i.State)
			}
		}
		if len(list) != len(all) || len(bad) > 0 {
			return fmt.Errorf("ps on %s: %d instances, not running: %v", asker, len(list), bad)
		}
		return nil
	}
	testutil.WaitFor(t, 60*time.Second, func() error { return allRunning("c") })
	// alive reports which of the nodes named do not see every node alive.
	alive := func(askers, want []string) error {
		var missing []string
		for _, asker := range askers {
			ns, err := f.nodes(asker)
			if err != nil {
				return err
			}
			seen := map[string]string{}
			for _, n := range ns {
				seen[n.Name] = n.State
			}
			for _, n := range want {
				if seen[n] != "alive" {
					missing = append(missing, fmt.Sprintf("%s sees %s %q", asker, n, seen[n]))
				}
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s", strings.Join(missing, "; "))
		}
		return nil
	}

	stopped := []string{"a", "b"}
	rounds := []struct {
		name     string
		stop     func(string) error
		gone     string // what c says of them then
		cutFirst bool   // they reach each other before the others
	}{
		{"kill -9", f.lab.Kill9, "dead", false},
		{"SIGTERM", func(n string) error { return f.lab.Stop(n, 30*time.Second) }, "left", true},
	}
	for _, r := range rounds {
		for _, n := range stopped {
			if err := r.stop(n); err != nil {
				t.Fatalf("%s: %v", r.name, err)
			}
		}
		// The others hold them for gone before they come back, as
		// after a reboot.
		testutil.WaitFor(t, 30*time.Second, func() error {
			ns, err := f.nodes("c")
			if err != nil {
				return err
			}
			for _, n := range ns {
				if slices.Contains(stopped, n.Name) && n.State != r.gone {
					return fmt.Errorf("c sees %s %s, want %s", n.Name, n.State, r.gone)
				}
			}
			return nil
		})
		if r.cutFirst {
			if err := f.lab.Partition(stopped, []string{"c", "d"}); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range stopped {
			if err := f.lab.Restart(n); err != nil {
				t.Fatal(err)
			}
		}
		if r.cutFirst {
			testutil.WaitFor(t, 30*time.Second, func() error { return alive(stopped, stopped) })
			// The cut outlasts their first attempts to reach the others,
			// as a link that comes back late would: memberlist tries
			// the members one after the other, 10 s each.
			time.Sleep(2 * joinTimeout)
			if err := f.lab.Heal(); err != nil {
				t.Fatal(err)
			}
		}
		started := time.Now()
		if err := testutil.Poll(rejoinWithin, func() error { return alive(all, all) }); err != nil {
			t.Fatalf("%s of a and b, started again: not all alive after %v: %v", r.name, rejoinWithin, err)
		}
		t.Logf("%s of a and b: every node sees every node alive %v after they could", r.name, time.Since(started).Round(time.Millisecond))
		// A leader may take a moment to be elected and hear every report.
		for _, asker := range all {
			testutil.WaitFor(t, 30*time.Second, func() error { return allRunning(asker) })
		}
	}
}

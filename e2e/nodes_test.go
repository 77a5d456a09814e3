package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// What the others say of a node that dies and of one that stops: a
// killed node turns suspect, then dead, within gossip's timeouts, status
// says the cluster is degraded until it is back, and its instance shows
// unknown in ps; a node stopped with SIGTERM shows left.
func TestNodeStates(t *testing.T) {
	t.Parallel()
	f, all, st := threeVoters(t, "a")
	img := testutil.BuildTestImage(t, "testprog:1", testprogDir())
	for _, n := range all {
		f.mustCLI(n, "image", "import", img)
	}
	spec := filepath.Join(t.TempDir(), "app.yaml")
	os.WriteFile(spec, []byte(`name: everywhere
image: testprog:1
command: ["/app", "-sleep", "1h"]
mode: global
`), 0o644)
	f.mustCLI(f.admin, "apply", "-f", spec)
	t.Cleanup(func() {
		for _, n := range all {
			if !f.lab.Running(n) && f.lab.Restart(n) != nil {
				return
			}
		}
		// A node just restarted may wait for a leader a moment.
		err := testutil.Poll(30*time.Second, func() error {
			_, err := f.cli(f.admin, "rm", "everywhere")
			return err
		})
		if err != nil {
			t.Errorf("rm everywhere: %v", err)
		}
		for _, n := range all {
			err := testutil.Poll(30*time.Second, func() error {
				if left := leftoversWhileRunning(f.dirs[n], f.cgroupParent(n)); len(left) > 0 {
					return fmt.Errorf("left behind on %s: %v", n, left)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}
	})
	// The leader dies: the new leader never had its instance's report.
	victim, asker, other := st.Leader, "", ""
	for _, n := range all {
		switch {
		case n == victim:
		case asker == "":
			asker = n
		default:
			other = n
		}
	}
	ps := func() (map[string]string, error) {
		out, err := f.cli(asker, "ps", "-o", "json")
		if err != nil {
			return nil, err
		}
		var list []instance
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return nil, err
		}
		byNode := map[string]string{}
		for _, i := range list {
			byNode[i.Node] = i.State
		}
		return byNode, nil
	}
	testutil.WaitFor(t, 60*time.Second, func() error {
		got, err := ps()
		if err != nil || len(got) != 3 || got[victim] != "running" {
			return fmt.Errorf("ps on %s: %v %v", asker, got, err)
		}
		return nil
	})
	stateOf := func(name string) (string, error) {
		ns, err := f.nodes(asker)
		if err != nil {
			return "", err
		}
		for _, n := range ns {
			if n.Name == name {
				return n.State, nil
			}
		}
		return "", fmt.Errorf("%s does not list %s: %+v", asker, name, ns)
	}

	if err := f.lab.Kill9(victim); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var suspect, dead time.Duration
	err := testutil.PollEvery(30*time.Second, 50*time.Millisecond, func() error {
		s, err := stateOf(victim)
		switch {
		case err != nil:
			return err
		case s == "suspect" && suspect == 0:
			suspect = time.Since(killed)
		case s == "dead":
			dead = time.Since(killed)
			return nil
		}
		return fmt.Errorf("%s is %s on %s", victim, s, asker)
	})
	if err != nil {
		t.Fatalf("kill -9 of %s: %v", victim, err)
	}
	t.Logf("kill -9 of %s: suspect after %v, dead after %v", victim, suspect.Round(time.Millisecond), dead.Round(time.Millisecond))
	if suspect == 0 {
		t.Errorf("%s went dead without showing suspect", victim)
	}
	testutil.WaitFor(t, 15*time.Second, func() error {
		st, err := f.status(asker)
		if err != nil || !strings.HasPrefix(st.Health, "degraded") || !strings.Contains(st.Health, victim) {
			return fmt.Errorf("status on %s with voter %s dead: %+v %v", asker, victim, st, err)
		}
		return nil
	})
	testutil.WaitFor(t, 15*time.Second, func() error {
		got, err := ps()
		if err != nil || got[victim] != "unknown" || got[asker] != "running" {
			return fmt.Errorf("ps on %s with %s dead: %v %v", asker, victim, got, err)
		}
		return nil
	})

	if err := f.lab.Restart(victim); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		s, err := stateOf(victim)
		if err != nil || s != "alive" {
			return fmt.Errorf("%s back: %q %v", victim, s, err)
		}
		st, err := f.status(asker)
		if err != nil || st.Health != "healthy" {
			return fmt.Errorf("status on %s with %s back: %+v %v", asker, victim, st, err)
		}
		return nil
	})

	stopped := time.Now()
	if err := f.lab.Stop(other, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, func() error {
		if s, err := stateOf(other); err != nil || s != "left" {
			return fmt.Errorf("%s stopped: %q %v", other, s, err)
		}
		return nil
	})
	t.Logf("SIGTERM to %s: left after %v", other, time.Since(stopped).Round(time.Millisecond))
}

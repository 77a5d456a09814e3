package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/internal/testutil/lab"
)

// fleet is a cluster of `shoal up` processes, one per lab node, each in
// its own network namespace with the default ports.
type fleet struct {
	t     testing.TB
	lab   *lab.Lab
	bin   string
	dirs  map[string]string // node -> data dir
	token string
	admin string   // the bootstrap node, which keeps the admin credential
	extra []string // more `shoal up` flags for every node

	cgroups []string // the nodes' cgroup parents, learnt at cleanup
}

func newFleet(t testing.TB, extra ...string) *fleet {
	testutil.RequireRoot(t)
	f := &fleet{t: t, bin: shoalBin(t), dirs: map[string]string{}, extra: extra}
	// Registered first, so it runs after the lab's teardown: that kills
	// the daemons (a kill -9 cleans nothing up) and every process left.
	t.Cleanup(f.removeCgroups)
	f.lab = lab.New(t)
	return f
}

// removeCgroups removes the empty cgroup trees of the fleet's nodes: those
// of containers a killed daemon could not remove (its next start would)
// and the nodes' own.
func (f *fleet) removeCgroups() {
	for _, name := range f.cgroups {
		roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
		for _, root := range roots {
			var dirs []string
			filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			// Children first. Containers whose monitors the teardown
			// killed die by their parent-death signal, a moment later.
			for i := len(dirs) - 1; i >= 0; i-- {
				err := testutil.Poll(10*time.Second, func() error {
					if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
						return err
					}
					return nil
				})
				if err != nil {
					f.t.Errorf("remove cgroup %s: %v", dirs[i], err)
				}
			}
		}
	}
}

// add creates a lab node for name with a data dir of its own.
func (f *fleet) add(name string) {
	f.lab.AddNode(name)
	dir := f.t.TempDir()
	f.dirs[name] = dir
	// Before the data dir goes (cleanups run last first): which cgroup
	// removeCgroups is to remove.
	f.t.Cleanup(func() {
		var id struct{ ID string }
		b, err := os.ReadFile(filepath.Join(dir, "node.json"))
		if err == nil && json.Unmarshal(b, &id) == nil && len(id.ID) >= 12 {
			f.cgroups = append(f.cgroups, "shoal-"+id.ID[:12])
		}
	})
}

// upArgs is the `shoal up` of node name on the lab node host. The token
// goes in a file, as the docs say, never on the command line.
func (f *fleet) upArgs(name, host string, join string) []string {
	args := []string{f.bin, "--data-dir", f.dirs[name], "up", "--name", name, "--bind", f.lab.IP(host)}
	if join != "" {
		file := filepath.Join(f.t.TempDir(), "join")
		if err := os.WriteFile(file, []byte(join+"\n"), 0o600); err != nil {
			f.t.Fatal(err)
		}
		args = append(args, "--join-file", file)
	}
	return append(args, f.extra...)
}

// bootstrap starts the first node and keeps its join token.
func (f *fleet) bootstrap(name string) {
	f.t.Helper()
	f.add(name)
	f.admin = name
	if err := f.lab.Start(name, f.upArgs(name, name, ""), nil); err != nil {
		f.t.Fatal(err)
	}
	testutil.WaitFor(f.t, 15*time.Second, func() error {
		out, err := f.cli(name, "token")
		if err != nil {
			return err
		}
		f.token, err = tokenOf(out)
		return err
	})
}

// join starts node name with the fleet's token.
func (f *fleet) join(name string) {
	f.t.Helper()
	f.add(name)
	if err := f.lab.Start(name, f.upArgs(name, name, f.token), nil); err != nil {
		f.t.Fatal(err)
	}
}

// cli runs a shoal command against node name's local socket.
func (f *fleet) cli(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, append([]string{"--data-dir", f.dirs[name]}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("shoal %s on %s: %v: %s", strings.Join(args, " "), name, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// adminCLI runs a shoal command on node name, in its network namespace,
// with the admin credential: a cluster write that name, a non-voter,
// refuses goes to a voter.
func (f *fleet) adminCLI(name string, args ...string) (string, error) {
	argv := append([]string{f.bin, "--data-dir", f.dirs[name], "--credential", f.credential(f.admin)}, args...)
	out, err := f.lab.Exec(name, argv...)
	if err != nil {
		return string(out), fmt.Errorf("shoal %s on %s with the credential: %v: %s", strings.Join(args, " "), name, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

func (f *fleet) mustAdminCLI(name string, args ...string) string {
	f.t.Helper()
	out, err := f.adminCLI(name, args...)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func (f *fleet) mustCLI(name string, args ...string) string {
	f.t.Helper()
	out, err := f.cli(name, args...)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// importTestprog builds the testprog:1 image and imports it on nodes.
func (f *fleet) importTestprog(t testing.TB, nodes ...string) {
	t.Helper()
	img := testutil.TestProgImage(t, "testprog:1")
	for _, n := range nodes {
		f.mustCLI(n, "image", "import", img)
	}
}

// waitNothingLeft polls each node until nothing of its containers is left
// on the host (processes, mounts, cgroups, monitors), for up to within,
// and reports what stayed.
func (f *fleet) waitNothingLeft(t testing.TB, within time.Duration, nodes ...string) {
	t.Helper()
	for _, n := range nodes {
		err := testutil.Poll(within, func() error {
			if left := leftoversWhileRunning(f.dirs[n], f.cgroupParent(n)); len(left) > 0 {
				return fmt.Errorf("left behind on %s: %d things, first %v", n, len(left), left[0])
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
}

// psKeyed is node asker's ps, by key (the last instance of each key wins).
func (f *fleet) psKeyed(asker string, key func(instance) string) (map[string]instance, error) {
	out, err := f.cli(asker, "ps", "-o", "json")
	if err != nil {
		return nil, err
	}
	var list []instance
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, err
	}
	by := map[string]instance{}
	for _, i := range list {
		by[key(i)] = i
	}
	return by, nil
}

// psBy is psKeyed, failing t on an error.
func (f *fleet) psBy(t testing.TB, asker string, key func(instance) string) map[string]instance {
	t.Helper()
	by, err := f.psKeyed(asker, key)
	if err != nil {
		t.Fatal(err)
	}
	return by
}

type clusterStatus struct {
	ClusterID string   `json:"cluster_id"`
	Leader    string   `json:"leader"`
	Node      string   `json:"node"`
	Role      string   `json:"role"`
	Voters    []string `json:"voters"`
	Stale     bool     `json:"stale"`
	Health    string   `json:"health"`
	Commit    uint64   `json:"commit_index"`
	Term      uint64   `json:"term"`
}

func (f *fleet) status(name string) (clusterStatus, error) {
	var st clusterStatus
	out, err := f.cli(name, "status", "-o", "json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

type fleetNode struct {
	Name     string            `json:"name"`
	Address  string            `json:"address"`
	Role     string            `json:"role"`
	State    string            `json:"state"`
	Labels   map[string]string `json:"labels"`
	Cordoned bool              `json:"cordoned"`
}

func (f *fleet) nodes(name string) ([]fleetNode, error) {
	var ns []fleetNode
	out, err := f.cli(name, "nodes", "-o", "json")
	if err != nil {
		return nil, err
	}
	return ns, json.Unmarshal([]byte(out), &ns)
}

// waitFormed waits until node asker sees exactly the nodes named as alive
// members, with voters as the Raft voters, and a leader among them.
func (f *fleet) waitFormed(asker string, members, voters []string, within time.Duration) clusterStatus {
	f.t.Helper()
	var last clusterStatus
	testutil.WaitFor(f.t, within, func() error {
		st, err := f.status(asker)
		if err != nil {
			return err
		}
		last = st
		if st.ClusterID == "" {
			return fmt.Errorf("%s holds no state yet", asker)
		}
		got := slices.Clone(st.Voters)
		slices.Sort(got)
		want := slices.Clone(voters)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return fmt.Errorf("voters %v, want %v", got, want)
		}
		if st.Leader == "" || !slices.Contains(voters, st.Leader) {
			return fmt.Errorf("leader %q", st.Leader)
		}
		ns, err := f.nodes(asker)
		if err != nil {
			return err
		}
		var alive []string
		for _, n := range ns {
			if n.State == "alive" {
				alive = append(alive, n.Name)
			}
		}
		want = slices.Clone(members)
		slices.Sort(want)
		if !slices.Equal(alive, want) {
			return fmt.Errorf("alive members %v, want %v", alive, want)
		}
		return nil
	})
	return last
}

// label writes k=v on node target through node via, returning how long the
// write took (it includes the CLI's own start).
func (f *fleet) label(via, target, kv string) (time.Duration, error) {
	start := time.Now()
	_, err := f.cli(via, "label", target, kv)
	return time.Since(start), err
}

// waitLabel waits until node asker's replica shows label k=v on target.
func (f *fleet) waitLabel(asker, target, k, v string, within time.Duration) {
	f.t.Helper()
	testutil.WaitFor(f.t, within, func() error {
		ns, err := f.nodes(asker)
		if err != nil {
			return err
		}
		for _, n := range ns {
			if n.Name == target && n.Labels[k] == v {
				return nil
			}
		}
		return fmt.Errorf("%s does not see %s=%s on %s: %+v", asker, k, v, target, ns)
	})
}

func (f *fleet) credential(name string) string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dirs[name], "tls", "admin.credential"))
	if err != nil {
		f.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// cgroupParent is the cgroup node name's containers live under.
func (f *fleet) cgroupParent(name string) string { return cgroupParentOf(f.t, f.dirs[name]) }

// voterAndNonVoterFleet forms the smallest cluster with a non-voter: a
// bootstraps, b joins, and asker sees a as the one voter (two voters would
// be even: b waits as a non-voter for a third).
func voterAndNonVoterFleet(t *testing.T, asker string, extra ...string) *fleet {
	t.Helper()
	f := newFleet(t, extra...)
	f.bootstrap("a")
	f.join("b")
	f.waitFormed(asker, []string{"a", "b"}, []string{"a"}, 30*time.Second)
	return f
}

// threeVoters forms the usual test cluster: a bootstraps, b and c join,
// and asker sees all three as live voters.
func threeVoters(t *testing.T, asker string) (*fleet, []string, clusterStatus) {
	t.Helper()
	f := newFleet(t)
	f.bootstrap("a")
	f.join("b")
	f.join("c")
	all := []string{"a", "b", "c"}
	return f, all, f.waitFormed(asker, all, all, 30*time.Second)
}

// tokenOf reads the token out of the join command `shoal token` prints.
func tokenOf(out string) (string, error) {
	line := strings.TrimSpace(out)
	tok, ok := strings.CutPrefix(line, "SHOAL_JOIN=")
	if !ok || !strings.HasSuffix(tok, " shoal up") {
		return "", fmt.Errorf("shoal token printed %q, want SHOAL_JOIN=TOKEN shoal up", line)
	}
	return strings.TrimSuffix(tok, " shoal up"), nil
}

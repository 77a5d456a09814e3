package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// Three nodes form a cluster from one bootstrap and two joins; a write on a
// follower reaches every replica; kill -9 of the leader elects another and
// writes resume; the killed node comes back with its data dir, under its
// identity, and catches up.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	f, all, st := threeVoters(t, "c")

	follower := "a"
	for _, n := range all {
		if n != st.Leader {
			follower = n
			break
		}
	}
	if _, err := f.label(follower, "b", "site=plant-a"); err != nil {
		t.Fatalf("write on follower %s: %v", follower, err)
	}
	for _, n := range all {
		f.waitLabel(n, "b", "site", "plant-a", 10*time.Second)
	}

	old := st.Leader
	if err := f.lab.Kill9(old); err != nil {
		t.Fatal(err)
	}
	var survivor string
	for _, n := range all {
		if n != old {
			survivor = n
			break
		}
	}
	killed := time.Now()
	testutil.WaitFor(t, 15*time.Second, func() error {
		_, err := f.label(survivor, "b", "written=after-kill")
		return err
	})
	t.Logf("leader %s killed: a write was accepted after %v", old, time.Since(killed).Round(time.Millisecond))
	st2, err := f.status(survivor)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Leader == old || st2.Leader == "" {
		t.Fatalf("leader after the kill: %q", st2.Leader)
	}

	if err := f.lab.Restart(old); err != nil {
		t.Fatal(err)
	}
	f.waitFormed(old, all, all, 30*time.Second)
	f.waitLabel(old, "b", "written", "after-kill", 15*time.Second)
	st3, err := f.status(old)
	if err != nil {
		t.Fatal(err)
	}
	if st3.ClusterID != st.ClusterID || st3.Node != old {
		t.Fatalf("restarted node: %+v, want cluster %s node %s", st3, st.ClusterID, old)
	}
}

// Five nodes with the default three voters: two non-voters hold replicas.
// A voter that stays dead past the grace is replaced by a non-voter, so the
// cluster keeps three live voters.
func TestAutopilotReplacesDeadVoter(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "--dead-voter-grace", "2s")
	f.bootstrap("n1")
	for _, n := range []string{"n2", "n3", "n4", "n5"} {
		f.join(n)
	}
	all := []string{"n1", "n2", "n3", "n4", "n5"}
	var voters []string
	testutil.WaitFor(t, 30*time.Second, func() error {
		ns, err := f.nodes("n1")
		if err != nil {
			return err
		}
		voters = voters[:0]
		alive := 0
		for _, n := range ns {
			if n.State == "alive" {
				alive++
			}
			if n.Role == "voter" {
				voters = append(voters, n.Name)
			}
		}
		if alive != 5 || len(voters) != 3 {
			return fmt.Errorf("%d alive, voters %v: want 5 and 3", alive, voters)
		}
		return nil
	})
	var victim string
	st, err := f.status("n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range voters {
		if v != st.Leader {
			victim = v
			break
		}
	}
	if err := f.lab.Kill9(victim); err != nil {
		t.Fatal(err)
	}
	var asker string
	for _, n := range all {
		if n != victim {
			asker = n
			break
		}
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		st, err := f.status(asker)
		if err != nil {
			return err
		}
		if len(st.Voters) != 3 || strings.Contains(strings.Join(st.Voters, ","), victim) {
			return fmt.Errorf("voters %v: want three, without %s", st.Voters, victim)
		}
		return nil
	})
	// asker may be the non-voter: the credential takes the write to a voter.
	if _, err := f.adminCLI(asker, "label", asker, "after=replacement"); err != nil {
		t.Fatalf("write after the replacement: %v", err)
	}
}

// A join with a wrong secret, a token of another cluster or a truncated
// token fails with a message that says so, on both sides, and leaves
// nothing in the cluster nor in the refused node's data dir.
func TestJoinRefused(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	f.bootstrap("a")
	good, err := pki.ParseToken(f.token)
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := pki.Token{CA: good.CA, Secret: pki.NewSecret(), Addrs: good.Addrs}.String()
	otherCA, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	otherCluster := pki.Token{CA: otherCA.Fingerprint(), Secret: good.Secret, Addrs: good.Addrs}.String()

	cases := []struct{ name, token, want string }{
		{"wrong-secret", wrongSecret, "wrong join secret"},
		{"other-cluster", otherCluster, "belongs to another cluster (its CA fingerprint differs) than the one the join token names; nothing was sent"},
		{"truncated", f.token[:len(f.token)-4], "truncated"},
	}
	for i, c := range cases {
		name := fmt.Sprintf("x%d", i)
		f.add(name)
		out, err := f.lab.Exec(name, f.upArgs(name, name, c.token)...)
		if err == nil {
			t.Fatalf("%s: shoal up --join succeeded:\n%s", c.name, out)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%s: output does not say %q:\n%s", c.name, c.want, out)
		}
		for _, left := range []string{"node.json", "tls", "state.db", "raft"} {
			if _, err := os.Stat(filepath.Join(f.dirs[name], left)); err == nil {
				t.Errorf("%s: the refused node left %s in its data dir", c.name, left)
			}
		}
	}
	ns, err := f.nodes("a")
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 || ns[0].Name != "a" {
		t.Fatalf("nodes after refused joins: %+v", ns)
	}
	st, err := f.status("a")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Voters) != 1 {
		t.Fatalf("voters after refused joins: %v", st.Voters)
	}
	log, _ := os.ReadFile(f.lab.LogPath("a"))
	if !strings.Contains(string(log), "refused a join") || !strings.Contains(string(log), "wrong join secret") {
		t.Errorf("the cluster's log does not record the refused join")
	}
}

// A partitioned minority refuses writes within seconds, keeps answering
// reads marked stale, and converges after the heal.
func TestPartitionedMinority(t *testing.T) {
	t.Parallel()
	f, all, st := threeVoters(t, "a")
	// The minority is a follower, so the majority keeps its leader.
	minority := "c"
	if st.Leader == "c" {
		minority = "b"
	}
	var majority []string
	for _, n := range all {
		if n != minority {
			majority = append(majority, n)
		}
	}
	if err := f.lab.Partition([]string{minority}, majority); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		st, err := f.status(minority)
		if err != nil {
			return err
		}
		if !st.Stale {
			return fmt.Errorf("%s is not stale yet: %+v", minority, st)
		}
		return nil
	})
	took, err := f.label(minority, minority, "cut=yes")
	if err == nil {
		t.Fatal("the minority accepted a write")
	}
	if !strings.Contains(err.Error(), "leader") {
		t.Errorf("the refused write does not say why: %v", err)
	}
	if took > 10*time.Second {
		t.Errorf("the refused write took %v", took)
	}
	if _, err := f.nodes(minority); err != nil {
		t.Fatalf("reads on the minority: %v", err)
	}
	// When the minority node led, the majority elects a leader first; a
	// write without one fails fast, by design.
	testutil.WaitFor(t, 20*time.Second, func() error {
		st, err := f.status(majority[0])
		if err != nil {
			return err
		}
		if st.Leader == "" || st.Leader == minority {
			return fmt.Errorf("the majority has no leader of its own yet: %+v", st)
		}
		return nil
	})
	if _, err := f.label(majority[0], majority[1], "during=partition"); err != nil {
		t.Fatalf("write on the majority: %v", err)
	}

	if err := f.lab.Heal(); err != nil {
		t.Fatal(err)
	}
	f.waitLabel(minority, majority[1], "during", "partition", 30*time.Second)
	testutil.WaitFor(t, 20*time.Second, func() error {
		st, err := f.status(minority)
		if err != nil {
			return err
		}
		if st.Stale || st.Leader == "" {
			return fmt.Errorf("%s after the heal: %+v", minority, st)
		}
		return nil
	})
}

// The remote CLI reaches any node with the admin credential, over the
// cluster port; without it, or with another cluster's, it is refused.
func TestRemoteCLI(t *testing.T) {
	t.Parallel()
	// b answers once it holds the cluster's state (the admitted keys).
	f := voterAndNonVoterFleet(t, "b")
	f.add("laptop") // a machine outside the cluster, on its network
	server := net.JoinHostPort(f.lab.IP("b"), "7947")
	cred := f.credential("a")

	out, err := f.lab.Exec("laptop", f.bin, "--server", server, "--credential", cred, "nodes", "-o", "json")
	if err != nil {
		t.Fatalf("remote nodes: %v\n%s", err, out)
	}
	var ns []fleetNode
	if err := json.Unmarshal(out, &ns); err != nil || len(ns) != 2 {
		t.Fatalf("remote nodes: %v %s", err, out)
	}
	// A write through the remote API of b, a non-voter, which cannot pass
	// it on: the CLI takes it to the voter b names.
	if out, err := f.lab.Exec("laptop", f.bin, "--server", server, "--credential", cred, "label", "b", "via=remote"); err != nil {
		t.Fatalf("remote label: %v\n%s", err, out)
	}
	f.waitLabel("a", "b", "via", "remote", 10*time.Second)

	if out, err := f.lab.Exec("laptop", f.bin, "--server", server, "nodes"); err == nil || !strings.Contains(string(out), "--credential") {
		t.Errorf("without a credential: %v\n%s", err, out)
	}
	otherCA, _ := pki.NewCA("other")
	stranger := pki.NewCredential(otherCA.Fingerprint()).String()
	if out, err := f.lab.Exec("laptop", f.bin, "--server", server, "--credential", stranger, "nodes"); err == nil || !strings.Contains(string(out), "belongs to another cluster (its CA fingerprint differs) than the one the admin credential names") {
		t.Errorf("another cluster's credential: %v\n%s", err, out)
	}
	good, _ := pki.ParseCredential(cred)
	unknownKey := pki.NewCredential(good.CA).String()
	if out, err := f.lab.Exec("laptop", f.bin, "--server", server, "--credential", unknownKey, "nodes"); err == nil || !strings.Contains(string(out), "does not admit") {
		t.Errorf("a key the cluster never admitted: %v\n%s", err, out)
	}
}

// A node that comes back at another address (DHCP, another network) is
// the same node: same name and identity, and the Raft configuration
// follows its new address.
func TestAddressChange(t *testing.T) {
	t.Parallel()
	f, all, st := threeVoters(t, "a")
	mover := "c"
	if st.Leader == "c" {
		mover = "b"
	}
	if err := f.lab.Stop(mover, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	f.lab.AddNode("moved")
	if err := f.lab.Start("moved", f.upArgs(mover, "moved", ""), nil); err != nil {
		t.Fatal(err)
	}
	newIP := f.lab.IP("moved")
	testutil.WaitFor(t, 30*time.Second, func() error {
		ns, err := f.nodes("a")
		if err != nil {
			return err
		}
		for _, n := range ns {
			if n.Name == mover && n.Address == newIP && n.State == "alive" && n.Role == "voter" {
				return nil
			}
		}
		return fmt.Errorf("%s not yet a live voter at %s: %+v", mover, newIP, ns)
	})
	// The registry's address comes from the node; Raft's from the
	// leader's autopilot, which says so in its log a moment later (on
	// whichever node leads by then: the moved node too, whose log is
	// the lab node "moved"'s).
	testutil.WaitFor(t, 30*time.Second, func() error {
		for _, n := range append(slices.Clone(all), "moved") {
			log, _ := os.ReadFile(f.lab.LogPath(n))
			for _, l := range strings.Split(string(log), "\n") {
				if strings.Contains(l, `msg="autopilot: voter"`) && strings.Contains(l, "@"+newIP+":") {
					return nil
				}
			}
		}
		return fmt.Errorf("no leader has re-added %s at %s to Raft yet", mover, newIP)
	})
	// Raft talks to the new address: with the old one, stopping the
	// other follower would leave no majority.
	for _, other := range all {
		if other != mover && other != st.Leader {
			if err := f.lab.Stop(other, 20*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		_, err := f.label(mover, mover, "moved=yes")
		return err
	})
}

// After losing two of three voters for good, `shoal recover --force` on the
// survivor restarts the cluster from its state as the only voter; writes
// resume, and the lost nodes rejoin when they come back.
func TestRecoverAfterQuorumLoss(t *testing.T) {
	t.Parallel()
	f, all, _ := threeVoters(t, "a")
	if _, err := f.label("a", "a", "before=loss"); err != nil {
		t.Fatal(err)
	}
	f.waitLabel("c", "a", "before", "loss", 10*time.Second)
	for _, n := range []string{"b", "c"} {
		if err := f.lab.Kill9(n); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		if _, err := f.label("a", "a", "lost=yes"); err == nil {
			return fmt.Errorf("a write was accepted without a quorum")
		}
		st, err := f.status("a")
		if err != nil {
			return err
		}
		if st.Leader != "" {
			return fmt.Errorf("still a leader: %+v", st)
		}
		return nil
	})

	if _, err := f.cli("a", "recover", "--force"); err == nil || !strings.Contains(err.Error(), "stop the node") {
		t.Fatalf("recover on a running node: %v", err)
	}
	if err := f.lab.Stop("a", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cli("a", "recover"); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("recover without --force: %v", err)
	}
	f.mustCLI("a", "recover", "--force")
	if err := f.lab.Restart("a"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		_, err := f.label("a", "a", "after=recover")
		return err
	})
	st, err := f.status("a")
	if err != nil {
		t.Fatal(err)
	}
	if st.Leader != "a" || len(st.Voters) != 1 {
		t.Fatalf("after recover: %+v", st)
	}
	for _, n := range []string{"b", "c"} {
		if err := f.lab.Restart(n); err != nil {
			t.Fatal(err)
		}
	}
	f.waitFormed("a", all, all, 30*time.Second)
	for _, n := range []string{"b", "c"} {
		f.waitLabel(n, "a", "after", "recover", 15*time.Second)
	}
}

// A backup saved from a follower brings a lost cluster's apps and node
// labels back into a new one; the labels of a node that has not joined
// the new cluster wait for it without making a node of it (no phantom in
// `nodes`, none of a global app's instances); a damaged file or a cluster
// that already has apps is refused.
func TestSnapshotSaveRestore(t *testing.T) {
	t.Parallel()
	old := newFleet(t)
	old.bootstrap("a")
	old.join("b")
	old.waitFormed("b", []string{"a", "b"}, []string{"a"}, 30*time.Second)
	spec := filepath.Join(t.TempDir(), "app.yaml")
	// An image no registry serves: the apps are desired state only, and
	// no container starts.
	os.WriteFile(spec, []byte("name: web\nimage: registry.invalid/web:1\nreplicas: 2\n---\nname: agent\nimage: registry.invalid/agent:1\nmode: global\n"), 0o644)
	// b is a non-voter: its writes need the credential.
	old.mustAdminCLI("b", "apply", "-f", spec)
	old.mustAdminCLI("b", "label", "a", "site=plant-a")
	old.mustAdminCLI("b", "label", "b", "site=plant-b")
	file := filepath.Join(t.TempDir(), "backup")
	old.mustCLI("b", "snapshot", "save", file)

	fresh := newFleet(t)
	fresh.bootstrap("a")
	out := fresh.mustCLI("a", "snapshot", "restore", file)
	if !strings.Contains(out, "restored 2 apps") {
		t.Fatalf("restore said: %s", out)
	}
	fresh.waitLabel("a", "a", "site", "plant-a", 10*time.Second)
	psOf := func(f *fleet, asker string) (map[string]string, error) {
		out, err := f.cli(asker, "ps", "-o", "json")
		if err != nil {
			return nil, err
		}
		var ps []instance
		if err := json.Unmarshal([]byte(out), &ps); err != nil {
			return nil, err
		}
		where := map[string]string{} // instance -> node
		for _, i := range ps {
			where[i.Instance] = i.Node
		}
		return where, nil
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		where, err := psOf(fresh, "a")
		if err != nil {
			return err
		}
		// b has not joined: the global app has one instance, on a.
		if len(where) != 3 || where["web/0"] != "a" || where["web/1"] != "a" || where["agent/0"] != "a" {
			return fmt.Errorf("instances after restore: %v, want web/0, web/1 and agent/0 on a", where)
		}
		return nil
	})
	// Every node `nodes` shows is a node that joined, and each can be
	// forgotten (a live one is told to leave instead, not "not found").
	ns, err := fresh.nodes("a")
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 || ns[0].Name != "a" {
		t.Fatalf("nodes after restore: %+v, want a alone (b has not joined)", ns)
	}
	if _, err := fresh.cli("a", "forget", "a"); err == nil || strings.Contains(err.Error(), "not found") {
		t.Errorf("forget of a node that nodes shows: %v", err)
	}
	// A label or drain of a name no node has joined under is refused,
	// saying so: it changed settings nobody sees, and b, once it joins,
	// takes the backup's (checked below). An unknown name is not found.
	for _, args := range [][]string{{"label", "b", "site=elsewhere"}, {"drain", "b"}} {
		_, err := fresh.cli("a", args...)
		want := fmt.Sprintf(`: exit status 1: shoal: node "b": not found: no node has joined the cluster under that name; `+
			`a restored backup keeps labels and a drain for it, which a node takes when it joins under it: %s it once it has joined (shoal nodes lists it then)`, args[0])
		if err == nil || !strings.HasSuffix(err.Error(), want) {
			t.Errorf("%s of a name no node has joined under: %v\nwant it to end %q", args[0], err, want)
		}
	}
	for _, args := range [][]string{{"label", "nosuch", "site=x"}, {"drain", "nosuch"}} {
		if _, err := fresh.cli("a", args...); err == nil || !strings.HasSuffix(err.Error(), `: exit status 1: shoal: node "nosuch": not found`) {
			t.Errorf("%s of an unknown node: %v", args[0], err)
		}
	}
	// b joins the new cluster: it takes its labels and its global instance.
	fresh.join("b")
	fresh.waitLabel("a", "b", "site", "plant-b", 30*time.Second)
	testutil.WaitFor(t, 20*time.Second, func() error {
		where, err := psOf(fresh, "a")
		if err != nil {
			return err
		}
		onB := 0
		for inst, n := range where {
			if strings.HasPrefix(inst, "agent/") && n == "b" {
				onB++
			}
		}
		if len(where) != 4 || onB != 1 {
			return fmt.Errorf("instances after b joined: %v, want one agent instance on b", where)
		}
		return nil
	})

	if _, err := fresh.cli("a", "snapshot", "restore", file); err == nil || !strings.Contains(err.Error(), "already has apps") {
		t.Errorf("second restore: %v", err)
	}
	data, _ := os.ReadFile(file)
	damaged := filepath.Join(t.TempDir(), "damaged")
	os.WriteFile(damaged, data[:len(data)-20], 0o644)
	other := newFleet(t)
	other.bootstrap("z")
	if _, err := other.cli("z", "snapshot", "restore", damaged); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("damaged backup: %v", err)
	}
	if _, err := other.cli("z", "snapshot", "restore", spec); err == nil || !strings.Contains(err.Error(), "not a usable shoal backup") {
		t.Errorf("foreign file: %v", err)
	}
}

// drain and uncordon mark a node; leave takes one out of Raft and the
// registry, stops it, and its data dir refuses to start again.
func TestDrainAndLeave(t *testing.T) {
	t.Parallel()
	f, _, _ := threeVoters(t, "a")

	cordoned := func(name string) bool {
		ns, err := f.nodes("a")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if n.Name == name {
				return n.Cordoned
			}
		}
		t.Fatalf("no node %s", name)
		return false
	}
	f.mustCLI("c", "drain", "b")
	testutil.WaitFor(t, 10*time.Second, func() error {
		if !cordoned("b") {
			return fmt.Errorf("b not cordoned")
		}
		return nil
	})
	f.mustCLI("c", "uncordon", "b")
	testutil.WaitFor(t, 10*time.Second, func() error {
		if cordoned("b") {
			return fmt.Errorf("b still cordoned")
		}
		return nil
	})
	if _, err := f.cli("c", "drain", "nosuch"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("drain of an unknown node: %v", err)
	}

	out := f.mustCLI("c", "leave")
	if !strings.Contains(out, "left the cluster") {
		t.Errorf("leave said: %s", out)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		if f.lab.Running("c") {
			return fmt.Errorf("c still running")
		}
		ns, err := f.nodes("a")
		if err != nil {
			return err
		}
		for _, n := range ns {
			if n.Name == "c" {
				return fmt.Errorf("c still listed: %+v", n)
			}
		}
		st, err := f.status("a")
		if err != nil {
			return err
		}
		if strings.Contains(strings.Join(st.Voters, ","), "c") {
			return fmt.Errorf("c still a voter: %v", st.Voters)
		}
		return nil
	})
	out2, err := f.lab.Exec("c", f.upArgs("c", "c", "")...)
	if err == nil || !strings.Contains(string(out2), "left its cluster") {
		t.Errorf("restarting a node that left: %v\n%s", err, out2)
	}
	if _, err := f.label("a", "a", "after=leave"); err != nil {
		t.Errorf("write after a leave: %v", err)
	}
}

// ps answers for the whole cluster from any node: each node reports its
// own instances to the leader; an unreachable node's instances are
// unknown, not running.
func TestClusterPS(t *testing.T) {
	t.Parallel()
	f := voterAndNonVoterFleet(t, "a")
	f.importTestprog(t, "a", "b")
	spec := filepath.Join(t.TempDir(), "app.yaml")
	os.WriteFile(spec, []byte(`name: sleeper
image: testprog:1
command: ["/app", "-stdout", "started", "-sleep", "1h"]
replicas: 2
`), 0o644)
	f.mustAdminCLI("b", "apply", "-f", spec) // b is a non-voter
	t.Cleanup(func() {
		if f.lab.Running("b") || f.lab.Restart("b") == nil {
			f.cli("a", "rm", "sleeper")
		}
		f.waitNothingLeft(t, 30*time.Second, "a", "b")
	})
	ps := func(asker string) map[string]instance {
		return f.psBy(t, asker, func(i instance) string { return i.Node })
	}
	for _, asker := range []string{"a", "b"} {
		testutil.WaitFor(t, 30*time.Second, func() error {
			got := ps(asker)
			if got["a"].State != "running" || got["b"].State != "running" {
				return fmt.Errorf("ps on %s: %+v", asker, got)
			}
			return nil
		})
	}
	// A pid only from the node that runs the instance.
	if got := ps("a"); got["a"].PID == 0 || got["b"].PID != 0 {
		t.Errorf("ps on a: pid %d of a's instance, %d of b's; want a's only", got["a"].PID, got["b"].PID)
	}
	// logs and exec of b's instance, asked on a: a passes them on.
	onB := ps("a")["b"].Instance
	testutil.WaitFor(t, 10*time.Second, func() error {
		out, err := f.cli("a", "logs", onB)
		if err != nil || !strings.Contains(out, "started") {
			return fmt.Errorf("logs %s on a: %q %v", onB, out, err)
		}
		return nil
	})
	// logs of the app, asked on the voter a: both instances, each line
	// prefixed with its instance.
	testutil.WaitFor(t, 10*time.Second, func() error {
		out, err := f.cli("a", "logs", "sleeper")
		if err != nil || !strings.Contains(out, "sleeper/0 | started") || !strings.Contains(out, "sleeper/1 | started") {
			return fmt.Errorf("logs sleeper on a: %q %v", out, err)
		}
		return nil
	})
	if out, err := f.cli("a", "exec", onB, "--", "/app", "-stdout", "ran-remote"); err != nil || !strings.Contains(out, "ran-remote") {
		t.Errorf("exec %s on a: %q %v", onB, out, err)
	}
	if out, err := f.cli("a", "exec", onB, "--", "/app", "-exit", "3"); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("exec's exit code through a: %q %v", out, err)
	}
	if _, err := f.cli("a", "exec", onB, "--", "/nonexistent"); err == nil || !strings.Contains(err.Error(), "exit status 127") ||
		!strings.Contains(err.Error(), "/nonexistent: no such file") {
		t.Errorf("exec of a missing program through a: %v, want exit 127 and a message naming it", err)
	}

	// b is a non-voter: it may not reach a's instance, and says how; with
	// the credential the CLI asks the voter.
	onA := ps("a")["a"].Instance
	if _, err := f.cli("b", "exec", onA, "--", "/app", "-stdout", "x"); err == nil || !strings.Contains(err.Error(), "admin credential") {
		t.Errorf("exec %s on the non-voter b: %v", onA, err)
	}
	if out, err := f.adminCLI("b", "exec", onA, "--", "/app", "-stdout", "ran-on-a"); err != nil || !strings.Contains(out, "ran-on-a") {
		t.Errorf("exec %s on b with the credential: %q %v", onA, out, err)
	}
	if out, err := f.adminCLI("b", "logs", onA); err != nil || !strings.Contains(out, "started") {
		t.Errorf("logs %s on b with the credential: %q %v", onA, out, err)
	}
	// logs of the app on the non-voter: its own instance, and a's refused
	// with the way out, the exit status non-zero.
	if out, err := f.cli("b", "logs", "sleeper"); err == nil || !strings.Contains(err.Error(), "admin credential") ||
		!strings.Contains(out, onB+" | started") {
		t.Errorf("logs sleeper on the non-voter b: %q %v", out, err)
	}
	if out, err := f.adminCLI("b", "logs", "sleeper"); err != nil || strings.Count(out, " | started") != 2 {
		t.Errorf("logs sleeper on b with the credential: %q %v", out, err)
	}

	if err := f.lab.Kill9("b"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		got := ps("a")
		if got["b"].State != "unknown" || got["a"].State != "running" {
			return fmt.Errorf("ps on a with b down: %+v", got)
		}
		return nil
	})
}

// A name stays its node's while the node is stopped: a new device under
// the same name is refused until `shoal forget` frees it; the forgotten
// node's old data dir is refused by the cluster.
func TestForgetFreesAName(t *testing.T) {
	t.Parallel()
	f, all, _ := threeVoters(t, "a")
	if err := f.lab.Stop("c", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	// c may have led: a and b elect one of them.
	testutil.WaitFor(t, 10*time.Second, func() error {
		st, err := f.status("a")
		if err == nil && (st.Leader == "" || st.Leader == "c") {
			err = fmt.Errorf("leader %q", st.Leader)
		}
		return err
	})
	oldDir := f.dirs["c"]

	// A re-flashed device: same name, empty data dir, another address.
	f.lab.AddNode("c2")
	f.dirs["c"] = t.TempDir()
	out, err := f.lab.Exec("c2", f.upArgs("c", "c2", f.token)...)
	if err == nil || !strings.Contains(string(out), "belongs to another node") || !strings.Contains(string(out), "shoal forget c") {
		t.Fatalf("join under a stopped node's name: %v\n%s", err, out)
	}
	if _, err := f.cli("a", "forget", "a"); err == nil || !strings.Contains(err.Error(), "run shoal leave") {
		t.Errorf("forget of a live node, asked on itself: %v", err)
	}
	if _, err := f.cli("a", "forget", "b"); err == nil || !strings.Contains(err.Error(), "alive") {
		t.Errorf("forget of a live node: %v", err)
	}
	f.mustCLI("b", "forget", "c")
	f.dirs["c"] = t.TempDir()
	if err := f.lab.Start("c2", f.upArgs("c", "c2", f.token), nil); err != nil {
		t.Fatal(err)
	}
	f.waitFormed("a", all, all, 30*time.Second)

	// The forgotten device comes back with its old card: refused.
	f.lab.AddNode("c3")
	oldArgs := []string{f.bin, "--data-dir", oldDir, "up", "--bind", f.lab.IP("c3")}
	if err := f.lab.Start("c3", oldArgs, nil); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		for _, n := range []string{"a", "b"} {
			log, _ := os.ReadFile(f.lab.LogPath(n))
			if strings.Contains(string(log), "refused a peer") && strings.Contains(string(log), f.lab.IP("c3")) {
				return nil
			}
		}
		return fmt.Errorf("the forgotten node has not been refused yet")
	})
	f.waitFormed("a", all, all, 10*time.Second)
	ns, err := f.nodes("a")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if n.Name == "c" && n.Address != f.lab.IP("c2") {
			t.Errorf("c is at %s, want the new device at %s", n.Address, f.lab.IP("c2"))
		}
	}
}

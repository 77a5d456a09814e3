package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/api/client"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/internal/testutil/lab"
)

// The cluster benchmarks run one `shoal up` per node of a network lab
// (internal/testutil/lab): every node is a network namespace of its own
// with one address on the lab's bridge, so every daemon listens on the
// default ports, and nodes talk over veths as separate machines would. The
// benchmark talks to each node through its API socket in the data dir,
// which is reachable from the host (a unix socket belongs to the file
// system, not to a network namespace), so no CLI process is timed.
//
// Data dirs are under /var/tmp, not in b.TempDir(): /tmp may be a tmpfs,
// where nothing is ever written to a disk. The benchmarks that count
// writes (BenchmarkClusterApply, BenchmarkClusterIdle) give each node a
// disk of its own instead, a loop-backed ext4 (see loopDisk), unless
// -cluster-disks=false.

var clusterDisks = flag.Bool("cluster-disks", true, "BenchmarkClusterApply, BenchmarkClusterIdle: each node's data dir on a loop-backed ext4 of its own (false: plain dirs on /var/tmp)")

// labCluster is a shoal cluster in a lab: the nodes, their data dirs and
// the bootstrap's join token. Nodes are added from the benchmark's
// goroutine (lab.AddNode must be); start, the API calls and pids may then
// be used from any goroutine.
type labCluster struct {
	b     *testing.B
	lab   *lab.Lab
	bin   string
	root  string // parent of the data dirs
	token string
	nodes map[string]*labNode
	names []string // in the order of add
	// onDisks puts each node's data dir on a loopDisk of its own.
	onDisks bool
}

// labNode is one node: its data dir and a client of its API socket.
type labNode struct {
	name string
	dir  string
	c    *client.Client
	disk *loopDisk // nil unless the cluster is onDisks
}

func (n *labNode) socket() string { return filepath.Join(n.dir, "shoal.sock") }

// newLabCluster makes an empty lab. With onDisks, every node added gets a
// loopDisk of its own for its data dir. The disks and data dirs are
// removed after the lab's teardown has killed every daemon.
func newLabCluster(b *testing.B, onDisks bool) *labCluster {
	b.Helper()
	root, err := os.MkdirTemp("/var/tmp", "shoal-bench-cluster")
	if err != nil {
		b.Fatal(err)
	}
	lc := &labCluster{b: b, bin: shoalBin(b), root: root, nodes: map[string]*labNode{}, onDisks: onDisks}
	// Registered before lab.New, so it runs after the lab's teardown.
	b.Cleanup(func() {
		for _, n := range lc.nodes {
			if n.disk != nil {
				if err := n.disk.close(); err != nil {
					b.Errorf("disk of %s: %v", n.name, err)
				}
			}
		}
		os.RemoveAll(root)
	})
	lc.lab = lab.New(b)
	return lc
}

// add creates lab nodes with data dirs of their own.
func (lc *labCluster) add(names ...string) {
	lc.b.Helper()
	for _, name := range names {
		lc.lab.AddNode(name)
		dir := filepath.Join(lc.root, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			lc.b.Fatal(err)
		}
		n := &labNode{name: name, dir: dir}
		lc.nodes[name] = n
		if lc.onDisks {
			d, err := newLoopDisk(dir+".img", dir)
			if err != nil {
				lc.b.Fatalf("disk for %s: %v", name, err)
			}
			n.disk = d
			// The file system's root holds lost+found.
			n.dir = filepath.Join(dir, "data")
			if err := os.Mkdir(n.dir, 0o700); err != nil {
				lc.b.Fatal(err)
			}
		}
		n.c = client.New(n.socket())
		lc.names = append(lc.names, name)
	}
}

// start runs `shoal up` on node name: with the cluster's token, or as the
// bootstrap while there is none.
func (lc *labCluster) start(name string) error {
	n := lc.nodes[name]
	argv := []string{lc.bin, "--data-dir", n.dir, "up", "--name", name, "--bind", lc.lab.IP(name)}
	var env []string
	if lc.token != "" {
		env = []string{"SHOAL_JOIN=" + lc.token} // as the docs say: not in argv
	}
	return lc.lab.Start(name, argv, env)
}

// bootstrap starts node name as the cluster's first node, waits for it to
// lead and keeps its join token.
func (lc *labCluster) bootstrap(name string) {
	lc.b.Helper()
	if err := lc.start(name); err != nil {
		lc.b.Fatal(err)
	}
	c := lc.nodes[name].c
	_, err := waitUntil(time.Now(), 15*time.Second, 10*time.Millisecond, func() error {
		st, err := status(c)
		if err != nil {
			return err
		}
		if st.Leader != name || st.ClusterID == "" {
			return fmt.Errorf("%s does not lead yet: %+v", name, st)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		lc.token, err = c.Token(ctx)
		return err
	})
	if err != nil {
		lc.b.Fatalf("bootstrap %s: %v", name, err)
	}
}

// threeVoters starts a cluster of a, b and c, the default three voters,
// and returns its leader once every replica holds the same state.
func (lc *labCluster) threeVoters() string {
	lc.b.Helper()
	all := []string{"a", "b", "c"}
	lc.add(all...)
	lc.bootstrap("a")
	for _, n := range all[1:] {
		if err := lc.start(n); err != nil {
			lc.b.Fatal(err)
		}
	}
	return lc.formed(all, all, formTimeout)
}

// formed waits until every node named follows the same leader, the
// leader's status names voters as the voters, and all of them hold the
// same state; it returns the leader.
func (lc *labCluster) formed(names, voters []string, within time.Duration) string {
	lc.b.Helper()
	var leader string
	_, err := waitUntil(time.Now(), within, 20*time.Millisecond, func() error {
		sts, err := lc.statuses(names)
		if err != nil {
			return err
		}
		leader = sts[0].Leader
		if !slices.Equal(sts[0].Voters, voters) {
			return fmt.Errorf("voters %v, want %v", sts[0].Voters, voters)
		}
		return converged(sts, 0)
	})
	if err != nil {
		lc.b.Fatalf("cluster %v not formed after %v: %v", names, within, err)
	}
	return leader
}

// statuses asks each node named for its status.
func (lc *labCluster) statuses(names []string) ([]api.ClusterStatus, error) {
	out := make([]api.ClusterStatus, len(names))
	for i, name := range names {
		st, err := status(lc.nodes[name].c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[i] = st
	}
	return out, nil
}

// converged checks that the statuses name one leader, that none is stale,
// and that every replica has applied the same entries, at least minApplied:
// the same state, since the FSM is deterministic.
func converged(sts []api.ClusterStatus, minApplied uint64) error {
	first := sts[0]
	if first.Leader == "" {
		return fmt.Errorf("%s knows no leader", first.Node)
	}
	for _, st := range sts {
		switch {
		case st.Leader != first.Leader:
			return fmt.Errorf("%s says the leader is %q, %s says %q", st.Node, st.Leader, first.Node, first.Leader)
		case st.Stale:
			return fmt.Errorf("%s is stale", st.Node)
		case st.AppliedIdx < minApplied:
			return fmt.Errorf("%s applied %d, want at least %d", st.Node, st.AppliedIdx, minApplied)
		case st.AppliedIdx != first.AppliedIdx || st.CommitIndex != first.CommitIndex:
			return fmt.Errorf("%s applied %d of %d, %s %d of %d", st.Node, st.AppliedIdx, st.CommitIndex,
				first.Node, first.AppliedIdx, first.CommitIndex)
		}
	}
	return nil
}

// pids maps the names of the running nodes to their daemons' pids.
func (lc *labCluster) pids() map[string]int {
	out := map[string]int{}
	for _, p := range processes() {
		for name, n := range lc.nodes {
			if strings.HasPrefix(p.Cmdline, lc.bin+" --data-dir "+n.dir+" up ") {
				out[name] = p.PID
			}
		}
	}
	return out
}

// others is names without the ones left out.
func others(names []string, out ...string) []string {
	var rest []string
	for _, n := range names {
		if !slices.Contains(out, n) {
			rest = append(rest, n)
		}
	}
	return rest
}

// pollFast is how often the timed waits of the cluster benchmarks ask: a
// figure is late by at most this plus one API call (well under 1 ms).
const pollFast = 5 * time.Millisecond

// formTimeout bounds the waits for a cluster to form or grow: a member
// that the leader failed to confirm is checked again after 30 s
// (cluster.memberRecheck), so longer than that.
const formTimeout = 90 * time.Second

// apiTimeout bounds one API call of a benchmark to a node; a write that
// has to wait for an election takes longer than that and is tried again.
const apiTimeout = 2 * time.Second

func status(c *client.Client) (api.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	return c.Status(ctx)
}

func nodeList(c *client.Client) ([]api.Node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	return c.Nodes(ctx, false)
}

// label writes k=v on node target through client c: one Raft entry.
func label(c *client.Client, target, k, v string) error {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	return c.Label(ctx, target, api.LabelRequest{Set: map[string]string{k: v}})
}

// waitUntil calls check every interval until it returns nil and returns
// the time from start to that success, or check's last error after
// within. The time is taken right after the successful check, so it is
// late by at most one interval plus one check.
func waitUntil(start time.Time, within, interval time.Duration, check func() error) (time.Duration, error) {
	var took time.Duration
	err := testutil.PollEvery(within-time.Since(start), interval, func() error {
		err := check()
		took = time.Since(start)
		return err
	})
	return took, err
}

// running checks that every node named still runs: a daemon that exits
// fails the benchmark at once instead of at a poll's deadline.
func (lc *labCluster) running(names []string) error {
	for _, n := range names {
		if !lc.lab.Running(n) {
			return fmt.Errorf("node %s is not running (log %s)", n, lc.lab.LogPath(n))
		}
	}
	return nil
}

package bench

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

var (
	scaleNodes  = flag.Int("scale-nodes", 50, "nodes of BenchmarkClusterScale's cluster, the bootstrap included")
	scaleBurst  = flag.Int("scale-burst", 10, "BenchmarkClusterScale: joins in flight at once")
	scaleWindow = flag.Duration("scale-window", 10*time.Second, "BenchmarkClusterScale: how long the CPU use of the formed cluster is watched")
)

// BenchmarkClusterScale grows one cluster to -scale-nodes nodes (50 by
// default) in a lab on this machine. Node n01 bootstraps; the others join
// with its token, -scale-burst at a time (10 by default): a node counts as
// joined once it follows the leader, and the next one starts then. It
// reports, from the first join's start:
//
//   - "members-s": until n01's `nodes` shows every node alive and every
//     node follows the leader (each is a Raft server: three voters, the
//     others non-voters);
//   - "converged-s": until a label written through n01 after that has been
//     applied everywhere and every node reports the same applied and
//     commit index: every replica holds the same state;
//   - "elections": Raft terms begun after the bootstrap's, until then.
//
// It also reports the per-node join time ("join-ms", "join-p90-ms", from a
// node's start to it following the leader, queueing behind the others
// included), the nodes' RSS and PSS once converged (mean, and the largest
// as "rss-max-MB"), and the CPU use of the leader and of the followers
// (mean) over -scale-window: with every node a Raft server, the leader
// sends a heartbeat to each of them. One iteration is one cluster (run it
// with -benchtime 1x); with more, each is logged and the metrics are the
// last one's.
func BenchmarkClusterScale(b *testing.B) {
	testutil.RequireRoot(b)
	if *scaleNodes < 2 {
		b.Fatalf("-scale-nodes %d: want at least 2", *scaleNodes)
	}
	raiseNeighbourLimit(b, *scaleNodes)
	logLoad(b, "before")
	defer logLoad(b, "after")
	for b.Loop() {
		scaleOnce(b)
	}
}

// The kernel's ARP table is one for all network namespaces, and it holds
// at most gc_thresh3 entries (1024 by default): with every node of a lab
// talking to every other, 50 nodes need 2450, and past the limit new
// neighbours fail ("neighbor table overflow!" in the kernel log), connects
// fail with "no route to host", and nodes look dead to each other.
const neighPath = "/proc/sys/net/ipv4/neigh/default/"

// raiseNeighbourLimit raises gc_thresh2 and gc_thresh3 for the duration of
// the benchmark when nodes need more entries than they allow (plus 1024
// for everything else on the machine), and restores them in Cleanup.
func raiseNeighbourLimit(b *testing.B, nodes int) {
	b.Helper()
	need := nodes*(nodes-1) + 1024
	for _, name := range []string{"gc_thresh3", "gc_thresh2"} {
		path := neighPath + name
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		was, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			b.Fatalf("%s: %v", path, err)
		}
		if was >= need {
			continue
		}
		if err := os.WriteFile(path, []byte(strconv.Itoa(need)), 0o644); err != nil {
			b.Fatal(err)
		}
		b.Logf("%s raised from %d to %d for %d nodes; restored afterwards", path, was, need, nodes)
		b.Cleanup(func() { os.WriteFile(path, []byte(strconv.Itoa(was)), 0o644) })
	}
}

func scaleOnce(b *testing.B) {
	lc := newLabCluster(b, false)
	names := make([]string, *scaleNodes)
	for i := range names {
		names[i] = fmt.Sprintf("n%02d", i+1)
	}
	lc.add(names...)
	first := names[0]
	lc.bootstrap(first)
	c := lc.nodes[first].c
	st0, err := status(c)
	if err != nil {
		b.Fatal(err)
	}
	term0 := st0.Term

	start := time.Now()
	joins, err := lc.joinAll(names[1:], *scaleBurst)
	if err != nil {
		b.Fatal(err)
	}
	members, err := waitUntil(start, 5*time.Minute, 50*time.Millisecond, func() error {
		ns, err := nodeList(c)
		if err != nil {
			return err
		}
		alive := 0
		for _, n := range ns {
			if n.State == "alive" {
				alive++
			}
		}
		if alive != len(names) {
			return fmt.Errorf("%s sees %d of %d nodes alive", first, alive, len(names))
		}
		st, err := status(c)
		if err != nil {
			return err
		}
		return follows(lc, st.Leader, names...)
	})
	if err != nil {
		b.Fatalf("not all members after 5m: %v", err)
	}

	if err := label(c, first, "scale", "converged"); err != nil {
		b.Fatalf("write through %s: %v", first, err)
	}
	st, err := status(c)
	if err != nil {
		b.Fatal(err)
	}
	written := st.AppliedIdx // the label's index, or later
	var last string
	converged, err := waitUntil(start, 5*time.Minute, 50*time.Millisecond, func() error {
		sts, err := lc.statuses(names)
		if err != nil {
			return err
		}
		last = fmt.Sprintf("leader %s term %d", sts[0].Leader, sts[0].Term)
		st = sts[0]
		return converged(sts, written)
	})
	if err != nil {
		b.Fatalf("replicas not converged after 5m: %v (%s)", err, last)
	}
	b.Logf("%d nodes: all members after %.2f s, every replica at the same state after %.2f s (%s; %s)",
		len(names), members.Seconds(), converged.Seconds(), summary("join", joins), last)
	b.ReportMetric(float64(st.Term-term0), "elections")
	b.ReportMetric(members.Seconds(), "members-s")
	b.ReportMetric(converged.Seconds(), "converged-s")
	reportDurations(b, "join", joins)

	leader, err := status(c)
	if err != nil {
		b.Fatal(err)
	}
	lc.reportScaleCost(b, leader.Leader)
	// The next iteration's lab starts from an idle machine.
	for _, n := range names {
		lc.lab.Kill9(n)
	}
}

// joinAll starts the nodes named with the cluster's token, burst at a
// time, each as soon as an earlier one follows the leader; it returns
// each node's time from its start to that.
func (lc *labCluster) joinAll(names []string, burst int) ([]time.Duration, error) {
	todo := make(chan string, len(names))
	for _, n := range names {
		todo <- n
	}
	close(todo)
	var mu sync.Mutex
	var took []time.Duration
	var errs []error
	var wg sync.WaitGroup
	for range min(burst, len(names)) {
		wg.Go(func() {
			for n := range todo {
				start := time.Now()
				err := lc.start(n)
				if err == nil {
					_, err = waitUntil(start, 2*time.Minute, 20*time.Millisecond, func() error {
						if err := lc.running([]string{n}); err != nil {
							return err
						}
						st, err := status(lc.nodes[n].c)
						if err != nil {
							return err
						}
						if st.Leader == "" || st.ClusterID == "" {
							return fmt.Errorf("%s follows no leader yet", n)
						}
						return nil
					})
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("join %s: %w", n, err))
				} else {
					took = append(took, time.Since(start))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return took, nil
}

// reportScaleCost reports the memory of every node and the CPU use of the
// leader and the followers over -scale-window.
func (lc *labCluster) reportScaleCost(b *testing.B, leader string) {
	b.Helper()
	pids := lc.pids()
	if len(pids) != len(lc.names) {
		b.Fatalf("%d of %d daemons found", len(pids), len(lc.names))
	}
	ticks := map[string]int64{}
	for n, pid := range pids {
		t, err := cpuTicks(pid)
		if err != nil {
			b.Fatal(err)
		}
		ticks[n] = t
	}
	start := time.Now()
	time.Sleep(*scaleWindow)
	secs := time.Since(start).Seconds()
	var rss, pss, followerCPU float64
	var rssAll []float64
	for n, pid := range pids {
		t, err := cpuTicks(pid)
		if err != nil {
			b.Fatal(err)
		}
		cpu := float64(t-ticks[n]) / 100 / secs * 100
		m, err := readMem(pid)
		if err != nil {
			b.Fatal(err)
		}
		mb := float64(m.RSS) / (1 << 20)
		rss += mb / float64(len(pids))
		pss += float64(m.PSS) / (1 << 20) / float64(len(pids))
		rssAll = append(rssAll, mb)
		if n == leader {
			b.ReportMetric(cpu, "leader-cpu-%")
			b.ReportMetric(mb, "leader-rss-MB")
		} else {
			followerCPU += cpu / float64(len(pids)-1)
		}
	}
	b.ReportMetric(followerCPU, "follower-cpu-%")
	b.ReportMetric(rss, "rss-MB")
	b.ReportMetric(pss, "pss-MB")
	b.ReportMetric(slices.Max(rssAll), "rss-max-MB")
}

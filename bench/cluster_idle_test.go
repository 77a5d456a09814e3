package bench

import (
	"flag"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

var clusterIdleWindow = flag.Duration("cluster-idle-window", 60*time.Second, "how long BenchmarkClusterIdle watches the idle cluster per iteration")

// clusterSettle lets a new cluster's own writes (registrations, node
// facts, the first autopilot and scheduling passes) finish before it is
// watched.
const clusterSettle = 15 * time.Second

// BenchmarkClusterIdle measures three voters with no apps, each on a disk
// of its own (-cluster-disks), over -cluster-idle-window per iteration
// (60 s by default) after clusterSettle: per node, the bytes that reached
// its disk per second ("disk-B/s"), its write_bytes per second ("wB/s"),
// its CPU use in percent of one core, and its RSS and PSS at the end.
// Leader and followers are reported apart ("leader-…", "follower-…", the
// followers' mean): the leader sends the heartbeats and runs the leader
// loop; roles are those when the window begins. "rss-max-MB" is the
// largest node. "elections" counts the Raft terms begun since the cluster
// formed, while it settled and while it was watched: none, in a healthy
// idle cluster.
func BenchmarkClusterIdle(b *testing.B) {
	testutil.RequireRoot(b)
	lc := newLabCluster(b, *clusterDisks)
	formedBy := lc.threeVoters()
	all := lc.names
	st0, err := status(lc.nodes[formedBy].c)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(clusterSettle)
	pids := lc.pids()
	// Roles are those at the start of the window: an election may have
	// moved the leader while the cluster settled.
	leader := lc.formed(all, all, formTimeout)
	st1, err := status(lc.nodes[leader].c)
	if err != nil {
		b.Fatal(err)
	}

	type sample struct {
		written, disk, ticks int64
	}
	read := func(n string) sample {
		io, err := readIO(pids[n])
		if err != nil {
			b.Fatalf("%s: %v", n, err)
		}
		t, err := cpuTicks(pids[n])
		if err != nil {
			b.Fatalf("%s: %v", n, err)
		}
		s := sample{written: io.WriteBytes, ticks: t}
		if d := lc.nodes[n].disk; d != nil {
			if s.disk, err = d.written(); err != nil {
				b.Fatal(err)
			}
		}
		return s
	}

	logLoad(b, "before")
	defer logLoad(b, "after")
	var secs float64
	total := map[string]sample{}
	for b.Loop() {
		before := map[string]sample{}
		for _, n := range all {
			before[n] = read(n)
		}
		start := time.Now()
		time.Sleep(*clusterIdleWindow)
		for _, n := range all {
			s := read(n)
			t := total[n]
			t.written += s.written - before[n].written
			t.disk += s.disk - before[n].disk
			t.ticks += s.ticks - before[n].ticks
			total[n] = t
		}
		secs += time.Since(start).Seconds()
	}
	// An idle cluster should keep its leader; an election (a new term)
	// is reported, not a failure: it is shoal's behaviour under the
	// machine's load. Those while the cluster settled count too; those in
	// the window are in its figures.
	st, err := status(lc.nodes[leader].c)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.Term-st0.Term), "elections")
	if st.Term != st0.Term {
		b.Logf("elections since the cluster formed: leader %s in term %d when formed, %s in term %d when watching began, %s in term %d at the end",
			st0.Leader, st0.Term, leader, st1.Term, st.Leader, st.Term)
	}
	var rssMax float64
	followers := float64(len(all) - 1)
	metric := map[string]float64{}
	for _, n := range all {
		m, err := readMem(pids[n])
		if err != nil {
			b.Fatal(err)
		}
		t := total[n]
		vals := map[string]float64{
			"disk-B/s": float64(t.disk) / secs,
			"wB/s":     float64(t.written) / secs,
			"cpu-%":    float64(t.ticks) / 100 / secs * 100,
			"rss-MB":   float64(m.RSS) / (1 << 20),
			"pss-MB":   float64(m.PSS) / (1 << 20),
		}
		role := "follower"
		if n == leader {
			role = "leader"
		}
		b.Logf("%s (%s): disk %.1f B/s, write_bytes %.1f B/s, cpu %.2f %%, rss %.1f MB, pss %.1f MB",
			n, role, vals["disk-B/s"], vals["wB/s"], vals["cpu-%"], vals["rss-MB"], vals["pss-MB"])
		for k, v := range vals {
			if n == leader {
				metric["leader-"+k] = v
			} else {
				metric["follower-"+k] += v / followers
			}
		}
		rssMax = max(rssMax, vals["rss-MB"])
	}
	for k, v := range metric {
		if !lc.onDisks && (k == "leader-disk-B/s" || k == "follower-disk-B/s") {
			continue
		}
		b.ReportMetric(v, k)
	}
	b.ReportMetric(rssMax, "rss-max-MB")
	b.Logf("window %.0f s in all", secs)
}

package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
)

var (
	burstReplicas = flag.Int("burst-replicas", 1000, "BenchmarkClusterBurst: replicas applied at once to one node")
	burstSettle   = flag.Duration("burst-settle", 30*time.Second, "BenchmarkClusterBurst: how long the node is watched once every instance runs")
	burstInterval = flag.Duration("burst-check-interval", 10*time.Second, "BenchmarkClusterBurst: the health check's interval")
	burstTimeout  = flag.Duration("burst-check-timeout", 5*time.Second, "BenchmarkClusterBurst: the health check's timeout")
	burstNode     = flag.String("burst-node", "leader", "BenchmarkClusterBurst: the node the burst lands on: leader (the Raft leader's) or follower")
)

// BenchmarkClusterBurst applies -burst-replicas (1,000 by default)
// replicas of one app, all placed on one node of a three-voter cluster in a
// lab (the Raft leader's by default; -burst-node follower for another), with an HTTP health check (the defaults: every 10 s, 5 s timeout,
// 3 retries; -burst-check-interval and -burst-check-timeout change them), and
// watches the cluster until every instance runs and -burst-settle after.
// It reports:
//
//   - "all-running-s": from the apply until `ps` shows every instance
//     running;
//   - "terms": Raft terms begun on any node from the apply to the end
//     (elections; 0 is the goal);
//   - "restarts": the instances' restarts, all healthy containers (0 is
//     the goal), and "unhealthy", instances ever seen unhealthy;
//   - "load-max": the highest 1-minute load average of the machine;
//   - "rm-s" and "rm-terms": then the app's removal, until no container
//     of it is left, and the Raft terms begun meanwhile;
//   - "api-max-ms": the slowest `status` answer of the busy node, asked
//     every 200 ms: how responsive it stayed.
//
// Each node's Raft lines about leadership (timeouts, elections, a leader
// stepping down) during the burst are logged.
//
// Run it with -benchtime 1x.
func BenchmarkClusterBurst(b *testing.B) {
	testutil.RequireRoot(b)
	logLoad(b, "before")
	defer logLoad(b, "after")
	for b.Loop() {
		burstOnce(b)
	}
}

func burstOnce(b *testing.B) {
	lc := newLabCluster(b, false)
	leader := lc.threeVoters()
	busy := leader
	switch *burstNode {
	case "leader":
	case "follower":
		busy = lc.names[(slices.Index(lc.names, leader)+1)%len(lc.names)]
	default:
		b.Fatalf("-burst-node %q: want leader or follower", *burstNode)
	}
	c := lc.nodes[busy].c
	archive := testutil.TestProgImage(b, "testprog:1")
	f, err := os.Open(archive)
	if err != nil {
		b.Fatal(err)
	}
	_, err = c.ImportImage(context.Background(), f)
	f.Close()
	if err != nil {
		b.Fatalf("import on %s: %v", busy, err)
	}
	a := lc.nodes["a"].c
	if err := label(a, busy, "burst", "yes"); err != nil {
		b.Fatal(err)
	}
	termsOf := func() (map[string]uint64, error) {
		out := map[string]uint64{}
		for _, n := range lc.names {
			st, err := status(lc.nodes[n].c)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			out[n] = st.Term
		}
		return out, nil
	}
	// The label has reached the busy node's replica when the scheduler
	// may place there: wait for it through its own view of itself.
	_, err = waitUntil(time.Now(), 30*time.Second, 50*time.Millisecond, func() error {
		ns, err := nodeList(c)
		if err != nil {
			return err
		}
		for _, n := range ns {
			if n.Name == busy && n.Labels["burst"] == "yes" {
				return nil
			}
		}
		return fmt.Errorf("%s has no label burst=yes yet", busy)
	})
	if err != nil {
		b.Fatal(err)
	}
	before, err := termsOf()
	if err != nil {
		b.Fatal(err)
	}
	app := api.App{
		Name:      "burst",
		Image:     "testprog:1",
		Command:   []string{"/app", "-http", "127.0.0.1:8080", "-sleep", "24h"},
		Replicas:  *burstReplicas,
		Placement: api.Placement{Labels: map[string]string{"burst": "yes"}},
		Resources: api.Resources{Memory: 32 << 20},
		Health: &api.Health{HTTP: "http://127.0.0.1:8080/", Interval: api.Duration(*burstInterval),
			Timeout: api.Duration(*burstTimeout), Retries: 3},
	}

	// The machine's load and c's API, watched from the apply to the end.
	stop := make(chan struct{})
	var (
		wg      sync.WaitGroup
		loadMax float64
		apiMax  time.Duration
	)
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			loadMax = max(loadMax, load1())
			began := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			c.Status(ctx)
			cancel()
			apiMax = max(apiMax, time.Since(began))
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	_, err = a.Apply(ctx, []api.App{app})
	cancel()
	if err != nil {
		close(stop)
		wg.Wait()
		b.Fatalf("apply: %v", err)
	}
	applied := time.Now()
	logFrom := logSizes(lc)
	removed := false
	b.Cleanup(func() {
		if !removed {
			removeBurst(b, lc.nodes["a"].c, c, lc.nodes[busy].dir)
		}
	})

	unhealthy := map[string]bool{}
	var restarts int
	look := func() (running int, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ps, err := c.PS(ctx, "burst")
		if err != nil {
			return 0, err
		}
		restarts = 0
		for _, in := range ps {
			restarts += in.Restarts
			if in.State == api.StateUnhealthy {
				unhealthy[in.Instance] = true
			}
			if in.State == api.StateRunning {
				running++
			}
		}
		return running, nil
	}
	took, err := waitUntil(applied, 30*time.Minute, time.Second, func() error {
		if err := lc.running(lc.names); err != nil {
			return err
		}
		n, err := look()
		if err != nil {
			return err
		}
		if n != *burstReplicas {
			return fmt.Errorf("%d of %d running", n, *burstReplicas)
		}
		return nil
	})
	if err != nil {
		close(stop)
		wg.Wait()
		b.Fatalf("burst of %d: %v", *burstReplicas, err)
	}
	settle := time.Now().Add(*burstSettle)
	for time.Now().Before(settle) {
		if _, err := look(); err != nil {
			b.Logf("ps: %v", err)
		}
		time.Sleep(time.Second) // sampling, not waiting for a state
	}
	close(stop)
	wg.Wait()
	after, err := termsOf()
	if err != nil {
		b.Fatal(err)
	}
	terms := mostTerms(before, after)
	logRaftLeadership(b, lc, logFrom)
	b.Logf("%d replicas on %s (the %s): all running after %v, terms %v -> %v, restarts %d, unhealthy %d, load max %.1f, its status slowest %v",
		*burstReplicas, busy, *burstNode, took.Round(time.Second), before, after, restarts, len(unhealthy), loadMax, apiMax.Round(time.Millisecond))
	b.ReportMetric(took.Seconds(), "all-running-s")
	b.ReportMetric(float64(terms), "terms")
	b.ReportMetric(float64(restarts), "restarts")
	b.ReportMetric(float64(len(unhealthy)), "unhealthy")
	b.ReportMetric(loadMax, "load-max")
	b.ReportMetric(float64(apiMax.Milliseconds()), "api-max-ms")

	// Then the app's removal: a thousand stops at once on the busy node.
	logFrom = logSizes(lc)
	began := time.Now()
	removeBurst(b, lc.nodes["a"].c, c, lc.nodes[busy].dir)
	removed = true
	rmTook := time.Since(began)
	final, err := termsOf()
	if err != nil {
		b.Fatal(err)
	}
	rmTerms := mostTerms(after, final)
	logRaftLeadership(b, lc, logFrom)
	b.Logf("removal: every container gone after %v, terms %v -> %v", rmTook.Round(time.Second), after, final)
	b.ReportMetric(rmTook.Seconds(), "rm-s")
	b.ReportMetric(float64(rmTerms), "rm-terms")
}

// removeBurst removes the app and waits until c runs none of it and no
// mount of its containers is left under c's data dir cDir. A thousand
// stops keep c busy: its API may not answer for a while.
func removeBurst(b *testing.B, a, c interface {
	Delete(context.Context, []string) error
	PS(context.Context, string) ([]api.InstanceStatus, error)
}, cDir string) {
	deleted := false
	err := testutil.PollEvery(10*time.Minute, 2*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if !deleted {
			if err := a.Delete(ctx, []string{"burst"}); err != nil && !errors.Is(err, api.ErrNotFound) {
				return err
			}
			deleted = true
		}
		// Once the removal is applied, the app is unknown: not an error.
		ps, err := c.PS(ctx, "burst")
		if err != nil && !errors.Is(err, api.ErrNotFound) {
			return err
		}
		if len(ps) > 0 {
			return fmt.Errorf("c still shows %d instances", len(ps))
		}
		mounts, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return err
		}
		if n := strings.Count(string(mounts), " "+cDir+"/"); n > 0 {
			return fmt.Errorf("%d mounts left under %s", n, cDir)
		}
		return nil
	})
	if err != nil {
		b.Errorf("remove burst: %v", err)
	}
}

// load1 is the machine's 1-minute load average.
func load1() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(data))[0], 64)
	return f
}

// mostTerms is the most Raft terms any node began from before to after:
// the elections in between.
func mostTerms(before, after map[string]uint64) uint64 {
	var most uint64
	for n, t := range after {
		most = max(most, t-before[n])
	}
	return most
}

// logSizes is how far each node's log goes now.
func logSizes(lc *labCluster) map[string]int64 {
	out := map[string]int64{}
	for _, n := range lc.names {
		if fi, err := os.Stat(lc.lab.LogPath(n)); err == nil {
			out[n] = fi.Size()
		}
	}
	return out
}

// raftLeadership are the words of Raft's log lines about losing or seeking
// a leader.
var raftLeadership = []string{"heartbeat timeout reached", "failed to contact", "entering candidate state", "entering leader state", "lost leadership", "election won", "pre-vote"}

// logRaftLeadership logs each node's lines about leadership written since
// from (logSizes), at most 20 per node.
func logRaftLeadership(b *testing.B, lc *labCluster, from map[string]int64) {
	for _, n := range lc.names {
		data, err := os.ReadFile(lc.lab.LogPath(n))
		if err != nil {
			b.Logf("log of %s: %v", n, err)
			continue
		}
		data = data[min(from[n], int64(len(data))):]
		shown := 0
		for line := range strings.Lines(string(data)) {
			if shown == 20 {
				b.Logf("%s: more lines about leadership not shown", n)
				break
			}
			if slices.ContainsFunc(raftLeadership, func(w string) bool { return strings.Contains(line, w) }) {
				b.Logf("%s: %s", n, strings.TrimSpace(line))
				shown++
			}
		}
	}
}

package bench

import (
	"flag"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api/client"
	"github.com/shoal-edge/shoal/internal/testutil"
)

var applyWriters = flag.Int("apply-writers", 16, "concurrent writers in BenchmarkClusterApply/*-concurrent")

// BenchmarkClusterApply measures Raft writes on three voters in a lab:
// label writes (POST /v1/nodes/a/labels, one Raft entry each, the value
// changing every time) through the API socket of
//
//   - leader: the leader, one write after the other;
//   - follower: a follower, which forwards each write to the leader over
//     the cluster port;
//   - leader-concurrent, follower-concurrent: -apply-writers writers at
//     once (16 by default), each with a client of its own.
//
// A write returns once the entry is committed on two of the three voters
// and applied on the leader. Each sub-benchmark reports the median and p99
// latency ("apply-ms", "apply-p99-ms") and the throughput ("writes/s";
// ns/op is its inverse). It also reports what a write costs the disks:
// the bytes that reached the leader's disk ("leader-disk-B/op") and a
// follower's (the mean of the two, "follower-disk-B/op") — the Raft log
// (raft-wal), the FSM (bbolt), the file system's metadata and journal —
// and, for comparison, /proc/PID/io write_bytes ("leader-wB/op",
// "follower-wB/op"), which counts page-cache folios at their size when
// they are dirtied (see loopDisk) and is no measure of what a disk wears.
// A run that lasts past Raft's first snapshot check (2-4 minutes after
// the start, once 1024 entries have accumulated) includes the snapshot.
func BenchmarkClusterApply(b *testing.B) {
	testutil.RequireRoot(b)
	lc := newLabCluster(b, *clusterDisks)
	leader := lc.threeVoters()
	follower := others(lc.names, leader)[0]
	b.Logf("leader %s, writes through follower %s", leader, follower)

	logLoad(b, "before")
	defer logLoad(b, "after")
	for _, via := range []struct{ name, node string }{{"leader", leader}, {"follower", follower}} {
		b.Run(via.name, func(b *testing.B) {
			c := lc.nodes[via.node].c
			io := startIOCount(b, lc, leader)
			lat := make([]time.Duration, 0, 4096)
			i := 0
			for b.Loop() {
				start := time.Now()
				if err := label(c, "a", "apply", fmt.Sprint(i)); err != nil {
					b.Fatalf("write %d through %s: %v", i, via.node, err)
				}
				lat = append(lat, time.Since(start))
				i++
			}
			el := b.Elapsed()
			io.report(b, len(lat))
			reportApply(b, lat, el)
		})
		b.Run(via.name+"-concurrent", func(b *testing.B) {
			io := startIOCount(b, lc, leader)
			b.ResetTimer()
			b.SetParallelism((*applyWriters + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			var mu sync.Mutex
			var lat []time.Duration
			var failed error
			var seq int
			b.RunParallel(func(pb *testing.PB) {
				// A client each: one keeps two idle connections to its
				// socket, and more writers would keep dialling.
				c := client.New(lc.nodes[via.node].socket())
				mu.Lock()
				w := seq
				seq++
				mu.Unlock()
				var mine []time.Duration
				var err error
				for j := 0; pb.Next(); j++ {
					if err != nil {
						continue
					}
					start := time.Now()
					err = label(c, "a", fmt.Sprintf("apply%d", w), fmt.Sprint(j))
					mine = append(mine, time.Since(start))
				}
				mu.Lock()
				lat = append(lat, mine...)
				if err != nil && failed == nil {
					failed = fmt.Errorf("writer %d through %s: %w", w, via.node, err)
				}
				mu.Unlock()
			})
			if failed != nil {
				b.Fatal(failed)
			}
			el := b.Elapsed()
			io.report(b, len(lat))
			reportApply(b, lat, el)
			if b.N > 1 {
				b.Logf("%d writers", seq)
			}
		})
	}
	if st, err := status(lc.nodes[leader].c); err != nil || st.Leader != leader {
		b.Errorf("the leader changed during the run: %q (%v)", st.Leader, err)
	}
}

// reportApply reports the latencies' median and p99 and the throughput.
func reportApply(b *testing.B, lat []time.Duration, el time.Duration) {
	b.Helper()
	b.ReportMetric(ms(quantile(lat, 0.5)), "apply-ms")
	b.ReportMetric(ms(quantile(lat, 0.99)), "apply-p99-ms")
	b.ReportMetric(float64(len(lat))/el.Seconds(), "writes/s")
	if len(lat) < 2 {
		return // the one write that sizes a parallel run
	}
	b.Logf("%s  p99 %7.2f ms  %.0f writes/s", summary("apply", lat), ms(quantile(lat, 0.99)), float64(len(lat))/el.Seconds())
}

// ioCount holds the nodes' write_bytes and the leader's Raft indexes at the
// start of a run.
type ioCount struct {
	lc      *labCluster
	leader  string
	pids    map[string]int
	written map[string]int64 // write_bytes
	disk    map[string]int64 // bytes written to the node's disk
	commit  uint64
}

func startIOCount(b *testing.B, lc *labCluster, leader string) *ioCount {
	b.Helper()
	ic := &ioCount{lc: lc, leader: leader, pids: lc.pids(), written: map[string]int64{}, disk: map[string]int64{}}
	for _, n := range lc.names {
		w, d, err := ic.read(n)
		if err != nil {
			b.Fatal(err)
		}
		ic.written[n], ic.disk[n] = w, d
	}
	st, err := status(lc.nodes[leader].c)
	if err != nil {
		b.Fatal(err)
	}
	ic.commit = st.CommitIndex
	return ic
}

// read is node name's write_bytes and its disk's bytes written (0 when
// it has no disk of its own).
func (ic *ioCount) read(name string) (written, disk int64, err error) {
	pid, ok := ic.pids[name]
	if !ok {
		return 0, 0, fmt.Errorf("node %s does not run", name)
	}
	io, err := readIO(pid)
	if err != nil {
		return 0, 0, err
	}
	if d := ic.lc.nodes[name].disk; d != nil {
		disk, err = d.written()
	}
	return io.WriteBytes, disk, err
}

// report reports the bytes written per write since start, on the leader
// and on the followers (their mean), as write_bytes ("-wB/op") and, with
// disks, as bytes that reached the node's disk ("-disk-B/op"). It logs
// each node's figures and the number of Raft entries per write (1 unless
// something else wrote meanwhile).
func (ic *ioCount) report(b *testing.B, writes int) {
	b.Helper()
	if writes == 0 {
		return
	}
	var fw, fd float64
	var line string
	for _, n := range ic.lc.names {
		w, d, err := ic.read(n)
		if err != nil {
			b.Fatal(err)
		}
		pw := float64(w-ic.written[n]) / float64(writes)
		pd := float64(d-ic.disk[n]) / float64(writes)
		line += fmt.Sprintf("  %s %.0f / %.0f", n, pw, pd)
		if n == ic.leader {
			b.ReportMetric(pw, "leader-wB/op")
			if ic.lc.onDisks {
				b.ReportMetric(pd, "leader-disk-B/op")
			}
		} else {
			fw += pw / float64(len(ic.lc.names)-1)
			fd += pd / float64(len(ic.lc.names)-1)
		}
	}
	b.ReportMetric(fw, "follower-wB/op")
	if ic.lc.onDisks {
		b.ReportMetric(fd, "follower-disk-B/op")
	}
	st, err := status(ic.lc.nodes[ic.leader].c)
	if err != nil {
		b.Fatal(err)
	}
	if writes < 2 {
		return
	}
	b.Logf("bytes per write, write_bytes / disk:%s (leader %s); %.3f Raft entries per write", line, ic.leader,
		float64(st.CommitIndex-ic.commit)/float64(writes))
}

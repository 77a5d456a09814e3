package bench

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

var idleWindow = flag.Duration("idle-window", 20*time.Second, "how long BenchmarkDaemonIdle watches the idle daemon per iteration")

// idleSettle lets the bootstrap's own writes (state file, Raft log, first
// snapshot) finish before the idle daemon is watched.
const idleSettle = 5 * time.Second

// BenchmarkDaemonIdle measures a one-node `shoal up` with no apps, over
// -idle-window per iteration (20 s by default): bytes it caused to be written
// to storage per second ("write-B/s", /proc/PID/io write_bytes), bytes it
// passed to write calls of any kind per second ("wchar-B/s", sockets and
// pipes included), its CPU use in percent of one core, and its RSS and PSS
// at the end. Its data dir is on /var/tmp, not /tmp, which may be a tmpfs
// where nothing counts as written.
func BenchmarkDaemonIdle(b *testing.B) {
	testutil.RequireRoot(b)
	dir, err := os.MkdirTemp("/var/tmp", "shoal-bench-idle")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) }) // runs after the daemon's Cleanup
	d := startDaemon(b, "bench-idle", dir)
	time.Sleep(idleSettle)

	logLoad(b, "before")
	defer logLoad(b, "after")
	var secs float64
	var written, wchar, ticks int64
	for b.Loop() {
		io0, err := readIO(d.pid())
		if err != nil {
			b.Fatal(err)
		}
		cpu0, err := cpuTicks(d.pid())
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		time.Sleep(*idleWindow)
		io1, err := readIO(d.pid())
		if err != nil {
			b.Fatal(err)
		}
		cpu1, _ := cpuTicks(d.pid())
		secs += time.Since(start).Seconds()
		written += io1.WriteBytes - io0.WriteBytes
		wchar += io1.WChar - io0.WChar
		ticks += cpu1 - cpu0
	}
	m, err := readMem(d.pid())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(written)/secs, "write-B/s")
	b.ReportMetric(float64(wchar)/secs, "wchar-B/s")
	b.ReportMetric(float64(ticks)/100/secs*100, "cpu-%")
	b.ReportMetric(float64(m.RSS)/(1<<20), "rss-MB")
	b.ReportMetric(float64(m.PSS)/(1<<20), "pss-MB")
}

package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// overheadContainers is how many containers the overhead is measured with.
const overheadContainers = 5

// settle is how long memory figures are left to settle after a change (the
// Go runtime's heap, goroutines that finish starting): without it the first
// reading is the high-water mark of the change, not its cost.
const settle = 2 * time.Second

// steady is when the helpers are measured again after the apply: after the
// daemon's first requests to its monitors, whose garbage a monitor must
// not keep.
const steady = 10 * time.Second

// helperMem sums the helpers of some containers.
type helperMem struct {
	n, monitors, rss, pss int64
	spareRSS              int64 // the spare monitor's, a cost per node: not in rss
}

// measureHelpers reads the helpers of the containers pids (see
// BenchmarkPerContainerOverhead).
func measureHelpers(b *testing.B, daemon int, pids []int) helperMem {
	var h helperMem
	for _, p := range helpers(daemon, pids) {
		m, err := readMem(p.PID)
		if err != nil {
			continue // gone meanwhile: not a per-container process
		}
		b.Logf("helper pid %d (ppid %d): rss %d KiB pss %d KiB: %s", p.PID, p.PPID, m.RSS>>10, m.PSS>>10, p.Cmdline)
		if strings.Contains(p.Cmdline, monitorMarker+" - ") {
			h.spareRSS += m.RSS
			continue
		}
		h.n++
		h.rss += m.RSS
		h.pss += m.PSS
		if strings.Contains(p.Cmdline, monitorMarker) {
			h.monitors++
		}
	}
	return h
}

// BenchmarkPerContainerOverhead measures what each running container costs
// beyond its own processes, with overheadContainers busybox sleeps applied:
//
//   - helpers: processes that are neither the daemon nor the containers'
//     own (the daemon's other descendants and the containers' ancestors
//     below pid 1, such as a per-container monitor, whose command line
//     then carries __shoal_monitor), their count per container and their
//     RSS and PSS per container;
//   - the same helpers' RSS and PSS once steady (after steady), and the
//     spare monitor's RSS, which is per node, not per container;
//   - the daemon's RSS growth per container, against the same daemon idle
//     before the apply.
//
// The containers' own PSS is reported for scale ("ctr-pss-KB").
func BenchmarkPerContainerOverhead(b *testing.B) {
	testutil.RequireRoot(b)
	archive := testutil.BuildBusyboxImage(b)
	d := startDaemon(b, "bench-overhead", "")
	d.importImage(b, archive)

	logLoad(b, "before")
	defer logLoad(b, "after")
	var (
		n                                       float64
		idleRSS, busyRSS                        int64
		helperN, monitors, helperRSS, helperPSS int64
		steadyRSS, steadyPSS, spareRSS          int64
		ctrPSS                                  int64
	)
	for b.Loop() {
		time.Sleep(settle)
		idle, err := readMem(d.pid())
		if err != nil {
			b.Fatal(err)
		}
		d.apply(b, sleeper("overhead", overheadContainers))
		ps := d.waitRunning(b, "overhead", overheadContainers)
		time.Sleep(settle)
		busy, err := readMem(d.pid())
		if err != nil {
			b.Fatal(err)
		}
		var pids []int
		for _, in := range ps {
			pids = append(pids, in.PID)
			m, err := readMem(in.PID)
			if err != nil {
				b.Fatalf("%s: %v", in.Instance, err)
			}
			ctrPSS += m.PSS
		}
		h := measureHelpers(b, d.pid(), pids)
		helperN += h.n
		monitors += h.monitors
		helperRSS += h.rss
		helperPSS += h.pss
		spareRSS += h.spareRSS
		time.Sleep(steady - settle)
		h = measureHelpers(b, d.pid(), pids)
		steadyRSS += h.rss
		steadyPSS += h.pss
		idleRSS += idle.RSS
		busyRSS += busy.RSS
		d.remove(b, "overhead", pids...)
		n++
	}
	per := n * overheadContainers
	kib := func(v int64, by float64) float64 { return float64(v) / 1024 / by }
	b.ReportMetric(kib(idleRSS, n*1024), "daemon-idle-rss-MB")
	b.ReportMetric(kib(busyRSS-idleRSS, per), "daemon-rss-per-ctr-KB")
	b.ReportMetric(float64(helperN)/per, "helpers-per-ctr")
	b.ReportMetric(float64(monitors)/per, "monitors-per-ctr")
	b.ReportMetric(kib(helperRSS, per), "helper-rss-per-ctr-KB")
	b.ReportMetric(kib(helperPSS, per), "helper-pss-per-ctr-KB")
	b.ReportMetric(kib(steadyRSS, per), "helper-rss-steady-per-ctr-KB")
	b.ReportMetric(kib(steadyPSS, per), "helper-pss-steady-per-ctr-KB")
	b.ReportMetric(kib(spareRSS, n), "spare-monitor-rss-KB")
	b.ReportMetric(kib(ctrPSS, per), "ctr-pss-KB")
}

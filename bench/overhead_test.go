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

// BenchmarkPerContainerOverhead measures what each running container costs
// beyond its own processes, with overheadContainers busybox sleeps applied:
//
//   - helpers: processes that are neither the daemon nor the containers'
//     own (the daemon's other descendants and the containers' ancestors
//     below pid 1, such as a per-container monitor, whose command line
//     then carries __shoal_monitor), their count per container and their
//     RSS and PSS per container;
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
		for _, h := range helpers(d.pid(), pids) {
			m, err := readMem(h.PID)
			if err != nil {
				continue // gone meanwhile: not a per-container process
			}
			helperN++
			helperRSS += m.RSS
			helperPSS += m.PSS
			if strings.Contains(h.Cmdline, monitorMarker) {
				monitors++
			}
			b.Logf("helper pid %d (ppid %d): rss %d KiB pss %d KiB: %s", h.PID, h.PPID, m.RSS>>10, m.PSS>>10, h.Cmdline)
		}
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
	b.ReportMetric(kib(ctrPSS, per), "ctr-pss-KB")
}

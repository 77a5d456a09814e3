package bench

import (
	"context"
	"flag"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
)

var noSpareMonitor = flag.Bool("crash-no-spare-monitor", false, "BenchmarkCrashToRunning: run the node with --spare-monitor=false")

// BenchmarkCrashToRunning measures how long a crashed container takes to run
// again: from the SIGKILL of its PID 1 until `ps` (the API, polled every
// millisecond) shows the instance running with a new pid.
//
// The restart backoff only starts over after a run of 10 s, so killing one
// container again and again would measure the growing backoff, not a crash.
// Each iteration therefore applies a fresh app (a busybox sleep), kills it
// once it runs ("crash": the first restart, what a healthy container that
// crashes sees), kills the restarted container at once ("recrash": the
// second restart of a crash loop, with whatever backoff the policy gives),
// and removes the app. It reports the medians and p90s as "crash-ms" and
// "recrash-ms". With -crash-no-spare-monitor the node keeps no spare
// monitor: every restart starts its monitor process. With
// SHOAL_BENCH_BASE_BIN a node of that binary gets the same in each
// iteration, the first of the two alternating, reported as "base-crash-ms"
// and "base-recrash-ms".
func BenchmarkCrashToRunning(b *testing.B) {
	testutil.RequireRoot(b)
	archive := testutil.BuildBusyboxImage(b)
	var upArgs []string
	if *noSpareMonitor {
		upArgs = append(upArgs, "--spare-monitor=false")
	}
	nodes := []*daemon{startDaemon(b, "bench-crash", "", upArgs...)}
	names := []string{""}
	if base := baseBin(b); base != "" {
		nodes = append(nodes, startDaemonOf(b, base, "bench-crash-base", "", upArgs...))
		names = append(names, "base-")
	}
	for _, d := range nodes {
		d.importImage(b, archive)
	}

	logLoad(b, "before")
	defer logLoad(b, "after")
	crash := make([][]time.Duration, len(nodes))
	recrash := make([][]time.Duration, len(nodes))
	i := 0
	for b.Loop() {
		// With two nodes, the first to go alternates.
		for k := range nodes {
			n := (i + k) % len(nodes)
			c, rc := crashOnce(b, nodes[n], fmt.Sprintf("crash%d", i))
			crash[n] = append(crash[n], c)
			recrash[n] = append(recrash[n], rc)
		}
		i++
	}
	for n, name := range names {
		reportDurations(b, name+"crash", crash[n])
		reportDurations(b, name+"recrash", recrash[n])
	}
}

// crashOnce applies a sleeper app called name, kills it twice as
// BenchmarkCrashToRunning says, removes it, and returns both times.
func crashOnce(b *testing.B, d *daemon, name string) (crash, recrash time.Duration) {
	b.Helper()
	d.apply(b, sleeper(name, 1))
	first := d.waitRunning(b, name, 1)[0]
	crash, second := d.killAndTime(b, name, first)
	recrash, third := d.killAndTime(b, name, second)
	d.remove(b, name, first.PID, second.PID, third.PID)
	return crash, recrash
}

// killAndTime SIGKILLs the instance's process and polls ps every millisecond
// until the instance runs again under another pid, returning how long that
// took and the new status.
func (d *daemon) killAndTime(b *testing.B, app string, was api.InstanceStatus) (time.Duration, api.InstanceStatus) {
	b.Helper()
	start := time.Now()
	if err := syscall.Kill(was.PID, syscall.SIGKILL); err != nil {
		b.Fatalf("kill %d (%s): %v", was.PID, was.Instance, err)
	}
	deadline := start.Add(30 * time.Second)
	last := fmt.Errorf("not polled")
	for {
		ps, err := d.c.PS(context.Background(), app)
		now := time.Now()
		switch {
		case err != nil:
			last = err
		case len(ps) != 1:
			last = fmt.Errorf("ps shows %d instances of %s", len(ps), app)
		case ps[0].State != api.StateRunning || ps[0].PID <= 0 || ps[0].PID == was.PID:
			last = fmt.Errorf("%s is %s with pid %d (was %d)", ps[0].Instance, ps[0].State, ps[0].PID, was.PID)
		default:
			if ps[0].Restarts != was.Restarts+1 {
				b.Fatalf("%s running again after %d restarts, want %d", ps[0].Instance, ps[0].Restarts, was.Restarts+1)
			}
			return now.Sub(start), ps[0]
		}
		if now.After(deadline) {
			b.Fatalf("not running again 30s after the kill: %v", last)
		}
		time.Sleep(time.Millisecond)
	}
}

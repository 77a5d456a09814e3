package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// startGap pauses before each start. Back to back (0, the default) is how
// the reference figures were taken; a pause lets the previous container's
// asynchronous teardown (the kernel's network namespace cleanup, Docker's
// removal) finish first, but on this VM it makes every runtime slower
// (idle vCPUs wake slowly), so it is a sensitivity check, not the default.
var startGap = flag.Duration("start-gap", 0, "pause before each start in BenchmarkOneShotStart (0: back to back)")

// trueArgs is the container's command everywhere: the image holds only
// /bin/busybox, whose "true" applet is /bin/true.
var trueArgs = []string{"/bin/busybox", "true"}

// starter starts one one-off container that runs trueArgs and waits for it
// to exit, returning the time it measured.
type starter struct {
	name  string
	start func(i int) (time.Duration, []byte, error)
}

// BenchmarkOneShotStart measures a one-off container, from the command to
// its exit, with shoal and the other runtimes in one interleaved run: each
// iteration starts one container with each runtime, the first runtime
// rotating, so that drift of the machine hits all of them alike.
//
//   - shoal: `shoal run --rm busybox:1 -- /bin/busybox true` through a
//     running `shoal up` (the CLI process, the API call, the container);
//   - shoal-cold: the same on a node started with --spare-idle 0, so that
//     no spare init is ready: every run forks its init and moves it into
//     its cgroup (the first run after a minute without one is like this);
//   - shoal-api: the same request through the API client (to a node of its
//     own), without the CLI process: what the CLI's own start costs is the
//     difference;
//   - crun, runc: `crun run` / `runc run` of an OCI bundle on the same root
//     file system (crun through its helper, see crunHelperMain);
//   - docker: `docker run --rm` when a Docker daemon answers.
//
// With SHOAL_BENCH_BASE_BIN, the three shoal starters run on nodes of that
// binary too, as "base", "base-cold" and "base-api", and every second
// iteration swaps their places with shoal's.
//
// It reports the median and p90 of each as "<runtime>-ms" and
// "<runtime>-p90-ms" and the ratios of medians "shoal/crun", "shoal/runc",
// "shoal/docker", and "shoal/base" (and -cold, -api). ns/op is the time of one whole rotation.
func BenchmarkOneShotStart(b *testing.B) {
	testutil.RequireRoot(b)
	archive := testutil.BuildBusyboxImage(b)
	starters := shoalStarters(b, shoalBin(b), "shoal", "bench-start", archive)
	var baseStarters []starter
	if base := baseBin(b); base != "" {
		baseStarters = shoalStarters(b, base, "base", "bench-base", archive)
	}
	starters = append(starters, baseStarters...)
	logLoad(b, "before")
	defer logLoad(b, "after")
	var rootfs string
	needRootfs := func() string {
		if rootfs == "" {
			rootfs = unpackRootfs(b, archive)
		}
		return rootfs
	}
	if _, err := exec.LookPath("runc"); err == nil {
		bundle, root := ociBundle(b, "runc", needRootfs(), trueArgs), b.TempDir()
		b.Cleanup(func() { ociCleanup(b, "runc", root, "bench-runc-") })
		starters = append(starters, starter{"runc", func(i int) (time.Duration, []byte, error) {
			return timeRun(exec.Command("runc", "--root", root, "run", "--bundle", bundle, fmt.Sprintf("bench-runc-%d", i)))
		}})
	} else {
		b.Log("runc is not installed: not compared (apt-get install runc)")
	}
	if _, err := exec.LookPath("crun"); err == nil {
		bundle, root := ociBundle(b, "crun", needRootfs(), trueArgs), b.TempDir()
		h := startNSHelper(b)
		// Registered after the helper's own Cleanup, so it runs first: crun
		// must delete in the helper's namespace, where it works.
		b.Cleanup(func() {
			_, out, _ := h.run("crun", "--root", root, "list", "-q")
			for _, id := range strings.Fields(string(out)) {
				if strings.HasPrefix(id, "bench-crun-") {
					h.run("crun", "--root", root, "delete", "-f", id)
				}
			}
			removeCgroups(b, cgroupPrefix+"crun")
		})
		starters = append(starters, starter{"crun", func(i int) (time.Duration, []byte, error) {
			return h.run("crun", "--root", root, "run", "--bundle", bundle, fmt.Sprintf("bench-crun-%d", i))
		}})
	} else {
		b.Log("crun is not installed: not compared (apt-get install crun)")
	}
	if dockerReady(b, archive) {
		starters = append(starters, starter{"docker", func(int) (time.Duration, []byte, error) {
			return timeRun(exec.Command("docker", "run", "--rm", "--label", dockerLabel, "--entrypoint", trueArgs[0], busyboxRef, trueArgs[1]))
		}})
	}

	// One run of each outside the figures: page cache, first-use paths.
	for _, s := range starters {
		if _, out, err := s.start(-1); err != nil {
			b.Fatalf("%s (warm-up): %v\n%s", s.name, err, out)
		}
	}
	// A start right after a shoal start on another node is slower (that
	// node still removes its container and makes its next spare init):
	// the one after shoal-api took up to 1.7x the one after crun, whatever
	// the binary. So with a base binary, every
	// second iteration swaps the places of the shoal starters and their
	// base twins: each then follows the same starters as often.
	swapped := slices.Concat(baseStarters, starters[:len(baseStarters)], starters[2*len(baseStarters):])
	samples := make(map[string][]time.Duration)
	i := 0
	for b.Loop() {
		order := starters
		if i%2 == 1 {
			order = swapped
		}
		for k := range order {
			s := order[(i+k)%len(order)]
			if *startGap > 0 {
				time.Sleep(*startGap)
			}
			took, out, err := s.start(i)
			if err != nil {
				b.Fatalf("%s, iteration %d: %v\n%s", s.name, i, err, out)
			}
			samples[s.name] = append(samples[s.name], took)
		}
		i++
	}
	for _, s := range starters {
		reportDurations(b, s.name, samples[s.name])
	}
	shoal := quantile(samples["shoal"], 0.5)
	for _, other := range []string{"crun", "runc", "docker"} {
		if o := quantile(samples[other], 0.5); o > 0 {
			b.ReportMetric(float64(shoal)/float64(o), "shoal/"+other)
		}
	}
	for _, kind := range []string{"", "-cold", "-api"} {
		if o := quantile(samples["base"+kind], 0.5); o > 0 {
			b.ReportMetric(float64(quantile(samples["shoal"+kind], 0.5))/float64(o), "shoal"+kind+"/base"+kind)
		}
	}
}

// shoalStarters starts the three nodes of bin that BenchmarkOneShotStart
// runs one-offs on (see there), named node, node-cold and node-api, and
// returns their starters, named name, name-cold and name-api.
func shoalStarters(b *testing.B, bin, name, node, archive string) []starter {
	b.Helper()
	d := startDaemonOf(b, bin, node, "")
	d.importImage(b, archive)
	// A node without spare inits: every run starts cold.
	cold := startDaemonOf(b, bin, node+"-cold", "", "--spare-idle", "0")
	cold.importImage(b, archive)
	// The API client gets a node of its own: on the CLI's, it would take
	// the spare the CLI's next run is meant to find.
	viaAPI := startDaemonOf(b, bin, node+"-api", "")
	viaAPI.importImage(b, archive)

	args := append([]string{"--data-dir", d.dataDir, "run", "--rm", busyboxRef, "--"}, trueArgs...)
	coldArgs := append([]string{"--data-dir", cold.dataDir}, args[2:]...)
	return []starter{
		{name, func(int) (time.Duration, []byte, error) {
			return timeRun(exec.Command(bin, args...))
		}},
		{name + "-cold", func(int) (time.Duration, []byte, error) {
			return timeRun(exec.Command(bin, coldArgs...))
		}},
		{name + "-api", func(int) (time.Duration, []byte, error) {
			var out bytes.Buffer
			start := time.Now()
			code, err := viaAPI.c.Run(context.Background(), api.RunRequest{Image: busyboxRef, Command: trueArgs, Remove: true}, nil, &out, &out)
			el := time.Since(start)
			if err == nil && code != 0 {
				err = fmt.Errorf("exit code %d", code)
			}
			return el, out.Bytes(), err
		}},
	}
}

const dockerLabel = "shoal-bench=1"

// dockerReady says whether a Docker daemon answers; it then loads the
// busybox archive unless busybox:1 is there already, and Cleanup removes
// what the benchmark added.
func dockerReady(b *testing.B, archive string) bool {
	b.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		b.Log("docker is not installed: not compared")
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		b.Logf("no Docker daemon answers: not compared (%v: %s)", err, bytes.TrimSpace(out))
		return false
	}
	b.Cleanup(func() {
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+dockerLabel).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
	})
	if exec.Command("docker", "image", "inspect", busyboxRef).Run() != nil {
		run(b, "docker", "load", "--quiet", "--input", archive)
		b.Cleanup(func() { exec.Command("docker", "rmi", busyboxRef).Run() })
	}
	return true
}

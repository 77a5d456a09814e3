// Package bench holds shoal's benchmarks on the machine they run on, as root:
// how long a one-off container takes to start compared with crun, runc and
// Docker, how long a crashed container takes to run again, what each
// container costs beyond its own processes, and what an idle daemon costs;
// and for clusters of real `shoal up` processes in a network lab
// (internal/testutil/lab): joining, failover, Raft writes (latency,
// throughput, bytes written per write), an idle cluster, a 50-node one,
// and a burst of 1,000 instance starts on one node.
//
// # Basics
//
// Every benchmark builds bin/shoal from this module, starts its own
// `shoal up` on loopback in a temporary data dir and stops it again; the
// images are built by the benchmark (internal/testutil.BuildBusyboxImage).
// The figures are reported with b.ReportMetric in milliseconds, kilobytes
// and bytes per second; docs/BENCHMARKS.md records them with the commands
// that produced them:
//
//	go test -run '^$' -bench 'OneShotStart|CrashToRunning' -benchtime 30x ./bench/
//	go test -run '^$' -bench PerContainerOverhead -benchtime 3x ./bench/
//	go test -run '^$' -bench DaemonIdle -benchtime 1x ./bench/
//	go test -run '^$' -bench 'ClusterJoin|ClusterFailover' -benchtime 20x ./bench/
//	go test -run '^$' -bench 'ClusterApply' -benchtime 2000x ./bench/
//	go test -run '^$' -bench 'ClusterIdle|ClusterScale' -benchtime 1x ./bench/
//	go test -run '^$' -bench ClusterBurst -benchtime 1x ./bench/
//
// SHOAL_BENCH_BASE_BIN names a second binary (the build before a change):
// BenchmarkOneShotStart and BenchmarkCrashToRunning then run nodes of both,
// interleaved in one run, and report the second's figures as "base".
//
// # Caveats
//
// The benchmarks skip without root or without umoci, skopeo and busybox;
// crun, runc and Docker are compared only when installed (Docker only when
// its daemon answers). Debian 12's crun 1.8 refuses a hybrid cgroup host, so
// it runs inside a helper process in a private mount namespace without
// /sys/fs/cgroup/unified: crun then sees a pure cgroup v1 host. The helper
// times crun itself, so the namespace costs nothing in the figures.
// Everything a benchmark starts is stopped and removed in b.Cleanup, even
// when it fails, and a node that leaves mounts or cgroups behind fails it.
package bench

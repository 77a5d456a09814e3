// Package lab owns the network test lab for multi-process tests: a set of
// nodes, each a network namespace of its own with one address on a bridge,
// the processes started in them (the daemon under test, or any argv), their
// logs, and the partitions between them. It needs root; New skips the test
// otherwise.
//
// # Basics
//
//	l := lab.New(t) // torn down by t.Cleanup
//	a := l.AddNode("a")
//	l.AddNode("b")
//	err := l.Start("a", []string{bin, "agent", "-bind", a.IP.String()}, nil)
//	out, err := l.Exec("b", bin, "status", "-addr", l.IP("a")) // run in b
//	err = l.Partition([]string{"a"}, []string{"b"})            // a and b cut apart
//	err = l.Heal()
//	err = l.Kill9("a")
//	err = l.Restart("a") // the same argv and env again
//
// # Topology
//
// Nothing of a lab is in the host's network namespace. Its namespaces are
// unnamed, reached through file descriptors only, and hold:
//
//	hub netns    lo, bridge slab<X>, the hub ends slab<X>n<i> of the veths
//	node netns   lo, eth0 (the node end of veth i) with 10.<X>.0.<i>/16
//
// X is the lab's own second octet (see New) and i the node's index from 1,
// in the order of AddNode. A node reaches the other nodes of its lab and
// nothing else: there is no default route and no host address.
//
// A partition is a table "shoal_lab" (family ip) in each affected node's
// namespace whose input chain drops packets from the addresses of the
// nodes it is cut from. Both sides drop, so both directions are cut, and
// senders see no error, as across a real partition. Heal deletes those
// tables. The lab keeps the set of cut pairs and rewrites each node's
// table from it, so Partition composes and every change is one atomic
// nftables transaction per node.
//
// # Processes
//
// Start runs argv in the node's namespace in a process group of its own,
// with stdout and stderr appended to LogPath(node), between lines of the
// lab's own that begin with "=== lab:". Kill9 kills that process group
// only: a process that left the group (shoal's container monitors start
// new sessions) survives it, as it would survive a real kill -9 of the
// daemon.
//
// Teardown runs in t.Cleanup, passed or failed: it kills every process
// group, then every process still in one of the lab's namespaces (found in
// /proc), waits for them, logs the tail of every node's log if the test
// failed, and closes the namespaces' file descriptors. The namespaces, and
// the veths and bridge in them, go with their last reference.
//
// # Caveats
//
//   - A process in a node runs with the host's mount namespace, file system
//     and /etc: give each daemon its own data directory (t.TempDir()).
//   - Started processes carry a parent-death SIGKILL, so they die with the
//     test binary even when it dies too hard for t.Cleanup (a test timeout
//     panics and exits without cleanups). Their own children do not: they
//     stay, with their namespace, until they exit. Later labs cannot meet
//     them (every lab's namespaces are new), only their load.
//   - A binary built with -race sleeps a second before exiting with status
//     0 (GORACE atexit_sleep_ms); set GORACE=atexit_sleep_ms=0 for one
//     that Exec runs often.
//   - Partitions drop, they do not reject: a connection attempt across one
//     hangs until its own timeout. Give dials in tests short timeouts.
package lab

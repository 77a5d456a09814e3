//go:build linux

package lab

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// A dial that must fail, or is retried, is short: across a partition it
// hangs until its timeout. One that must succeed at once is long: it has
// time to spare on a loaded machine.
const (
	shortTimeout = 250 * time.Millisecond
	longTimeout  = 5 * time.Second
)

// readyTimeout bounds the wait for a started server to answer.
const readyTimeout = 10 * time.Second

// dialFrom sends a ping over proto from node from to the server in node
// to, and waits up to timeout for the answer.
func dialFrom(l *Lab, from, proto, to string, timeout time.Duration) error {
	argv := self("dial", proto, net.JoinHostPort(l.IP(to), port), timeout.String())
	out, err := l.Exec(from, argv...)
	if err != nil {
		return fmt.Errorf("%s %s -> %s: %w: %s", proto, from, to, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// mustReach fails unless from reaches to over TCP and UDP.
func mustReach(t *testing.T, l *Lab, from, to string) {
	t.Helper()
	for _, proto := range []string{"tcp", "udp"} {
		if err := dialFrom(l, from, proto, to, longTimeout); err != nil {
			t.Error(err)
		}
	}
}

// mustNotReach fails unless pings over TCP and UDP time out for each pair
// {from, to}: dropped, not refused, so the server is there but unreachable.
// The dials run at once: each takes its whole timeout.
func mustNotReach(t *testing.T, l *Lab, pairs ...[2]string) {
	t.Helper()
	var wg sync.WaitGroup
	for _, p := range pairs {
		for _, proto := range []string{"tcp", "udp"} {
			wg.Go(func() {
				err := dialFrom(l, p[0], proto, p[1], shortTimeout)
				if err == nil {
					t.Errorf("%s %s -> %s: reached across the partition", proto, p[0], p[1])
				} else if !strings.Contains(err.Error(), "i/o timeout") {
					t.Errorf("want a timeout (dropped), got %v", err)
				}
			})
		}
	}
	wg.Wait()
}

// startServers starts serve in every named node and waits until the first
// reaches each of the others (and the others the first).
func startServers(t *testing.T, l *Lab, names ...string) {
	t.Helper()
	for _, name := range names {
		if err := l.Start(name, self("serve"), []string{"LAB_GREETING=" + name}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		from := names[0]
		if name == from {
			from = names[len(names)-1]
		}
		testutil.WaitFor(t, readyTimeout, func() error { return dialFrom(l, from, "tcp", name, shortTimeout) })
	}
}

func TestNodesReachEachOther(t *testing.T) {
	l := New(t)
	a, b := l.AddNode("a"), l.AddNode("b")
	if !l.Prefix().Contains(a.IP) || !l.Prefix().Contains(b.IP) || a.IP == b.IP {
		t.Fatalf("IPs %s, %s in lab %s", a.IP, b.IP, l.Prefix())
	}
	if l.IP("b") != b.IP.String() {
		t.Errorf("IP(b) = %s, want %s", l.IP("b"), b.IP)
	}
	startServers(t, l, "a", "b")
	mustReach(t, l, "b", "a")
	mustReach(t, l, "a", "b")
	out, err := l.Exec("a", self("dial", "tcp", net.JoinHostPort(b.IP.String(), port), "1s")...)
	if err != nil || strings.TrimSpace(string(out)) != "pong" {
		t.Errorf("Exec output %q, %v; want pong", out, err)
	}
	// The node's own loopback is up and its own.
	if err := dialFrom(l, "a", "tcp", "a", longTimeout); err != nil {
		t.Error(err)
	}
	if _, err := l.Exec("a", self("dial", "tcp", "127.0.0.1:"+port, "1s")...); err != nil {
		t.Errorf("loopback in a: %v", err)
	}
	log, err := os.ReadFile(l.LogPath("a"))
	if err != nil || !strings.Contains(string(log), "serving on "+port+" deaf false greeting a\n") {
		t.Errorf("log of a: %q, %v", log, err)
	}
	if _, err := l.Exec("nope", "true"); err == nil {
		t.Error("Exec in an unknown node succeeded")
	}
}

func TestPartitionAndHeal(t *testing.T) {
	l := New(t)
	for _, name := range []string{"a", "b", "c"} {
		l.AddNode(name)
	}
	startServers(t, l, "a", "b", "c")

	if err := l.Partition([]string{"a"}, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	mustNotReach(t, l, [2]string{"b", "a"}, [2]string{"a", "b"})
	mustReach(t, l, "c", "a")
	mustReach(t, l, "c", "b")
	mustReach(t, l, "a", "c")
	assertNoHostTable(t)

	// Partitions add up.
	if err := l.Partition([]string{"c"}, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	mustNotReach(t, l, [2]string{"c", "a"}, [2]string{"b", "a"})
	mustReach(t, l, "c", "b")

	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]string{{"a", "b"}, {"b", "a"}, {"c", "a"}, {"a", "c"}} {
		mustReach(t, l, p[0], p[1])
	}
	for _, n := range l.Nodes() {
		if tables := nodeTables(t, l, n.Name); len(tables) != 0 {
			t.Errorf("tables left in %s after Heal: %v", n.Name, tables)
		}
	}

	if err := l.Partition([]string{"a"}, []string{"a", "b"}); err == nil {
		t.Error("a node on both sides was accepted")
	}
	if err := l.Partition([]string{"a"}, []string{"nope"}); err == nil {
		t.Error("an unknown node was accepted")
	}
}

func TestKill9RestartStop(t *testing.T) {
	l := New(t)
	l.AddNode("a")
	l.AddNode("b")
	if l.Running("a") {
		t.Fatal("Running before Start")
	}
	if err := l.Restart("a"); err == nil {
		t.Fatal("Restart before Start succeeded")
	}
	if err := l.Start("a", []string{"/nonexistent/daemon"}, nil); err == nil {
		t.Fatal("Start of a missing binary succeeded")
	}
	if err := l.Start("a", nil, nil); err == nil {
		t.Fatal("Start of an empty argv succeeded")
	}
	if l.Running("a") {
		t.Fatal("Running after a failed Start")
	}
	startServers(t, l, "a", "b")
	if !l.Running("a") {
		t.Fatal("not Running after Start")
	}
	if err := l.Start("a", self("serve"), nil); err == nil {
		t.Fatal("second Start while running succeeded")
	}

	if err := l.Wait("a", 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("Wait for a running server: %v, want still running", err)
	}

	if err := l.Kill9("a"); err != nil {
		t.Fatal(err)
	}
	if l.Running("a") {
		t.Fatal("Running after Kill9")
	}
	if err := l.Wait("a", time.Second); err == nil || !strings.Contains(err.Error(), "signal: killed") {
		t.Fatalf("Wait after Kill9: %v, want signal: killed", err)
	}
	if err := dialFrom(l, "b", "tcp", "a", longTimeout); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial after Kill9: %v, want refused", err)
	}
	if err := l.Kill9("a"); err != nil {
		t.Errorf("Kill9 of a stopped node: %v", err)
	}

	if err := l.Restart("a"); err != nil {
		t.Fatal(err)
	}
	if !l.Running("a") {
		t.Fatal("not Running after Restart")
	}
	testutil.WaitFor(t, readyTimeout, func() error { return dialFrom(l, "b", "tcp", "a", shortTimeout) })

	// serve exits on SIGTERM by itself.
	if err := l.Stop("a", readyTimeout); err != nil {
		t.Fatal(err)
	}
	if err := l.Wait("a", time.Second); err != nil {
		t.Fatalf("Wait after a clean exit: %v", err)
	}
	if l.Running("a") {
		t.Fatal("Running after Stop")
	}
	// One that ignores it is killed after the grace period.
	if err := l.Start("a", self("serve", "-deaf"), nil); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, readyTimeout, func() error { return dialFrom(l, "b", "tcp", "a", shortTimeout) })
	if err := l.Stop("a", 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop of a deaf process: %v, want killed", err)
	}
	if l.Running("a") {
		t.Fatal("Running after Stop")
	}

	log, err := os.ReadFile(l.LogPath("a"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"start failed", "SIGKILL", "signal: killed", "SIGTERM", "sigterm\n", "exit status 0", "deaf true"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log of a lacks %q:\n%s", want, log)
		}
	}
	if n := strings.Count(string(log), "serving on"); n != 3 {
		t.Errorf("log of a has %d runs of serve, want 3:\n%s", n, log)
	}
}

// TestTeardownLeavesNothing runs a lab in a subtest, with a process that
// escaped its group and a partition in place, and checks after the
// subtest's cleanups that nothing of it is left.
func TestTeardownLeavesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	before := hostLinks(t)
	var (
		inos    map[uint64]bool
		session int
	)
	t.Run("lab", func(t *testing.T) {
		l := New(t)
		l.AddNode("a")
		l.AddNode("b")
		if err := l.Start("a", self("spawn"), nil); err != nil {
			t.Fatal(err)
		}
		var group int
		testutil.WaitFor(t, readyTimeout, func() error {
			var err error
			group, session, err = childPids(l.LogPath("a"))
			return err
		})
		if err := l.Partition([]string{"a"}, []string{"b"}); err != nil {
			t.Fatal(err)
		}
		if got := hostLinks(t); !slices.Equal(got, before) {
			t.Errorf("host links with a lab up: %v, before %v", got, before)
		}
		assertNoHostAddr(t, l)
		assertNoHostTable(t)

		if err := l.Kill9("a"); err != nil {
			t.Fatal(err)
		}
		// The group goes with Kill9; the new session stays, as after a
		// real kill -9.
		testutil.WaitFor(t, readyTimeout, func() error {
			if alive(group) {
				return fmt.Errorf("group child %d alive after Kill9", group)
			}
			return nil
		})
		if !alive(session) {
			t.Fatalf("session child %d died with Kill9", session)
		}
		inos = l.inodes(t)
		if len(pidsIn(inos)) == 0 {
			t.Fatal("pidsIn finds no process in the lab")
		}
	})
	if t.Failed() {
		return
	}
	if pids := pidsIn(inos); len(pids) != 0 {
		t.Errorf("processes %v left in the lab's namespaces", pids)
	}
	if alive(session) {
		t.Errorf("session child %d alive after teardown", session)
	}
	if fds := fdsOn(t, inos); len(fds) != 0 {
		t.Errorf("the test process still holds the lab's namespaces: %v", fds)
	}
	if got := hostLinks(t); !slices.Equal(got, before) {
		t.Errorf("host links after teardown: %v, before %v", got, before)
	}
	assertNoHostTable(t)
}

func TestParallelLabs(t *testing.T) {
	testutil.RequireRoot(t)
	var (
		mu       sync.Mutex
		prefixes []string
	)
	t.Run("group", func(t *testing.T) {
		for i := range 3 {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				l := New(t)
				// Same node names in every lab.
				l.AddNode("a")
				l.AddNode("b")
				startServers(t, l, "a", "b")
				mustReach(t, l, "a", "b")
				if err := l.Partition([]string{"a"}, []string{"b"}); err != nil {
					t.Fatal(err)
				}
				mustNotReach(t, l, [2]string{"a", "b"})
				mu.Lock()
				prefixes = append(prefixes, l.Prefix().String())
				mu.Unlock()
			})
		}
	})
	slices.Sort(prefixes)
	if len(prefixes) != 3 || len(slices.Compact(slices.Clone(prefixes))) != 3 {
		t.Errorf("lab prefixes %v, want 3 distinct", prefixes)
	}
}

package port

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// dialFrom opens n TCP connections from the loopback address src to addr
// and sends nothing on them.
func dialFrom(t *testing.T, src, addr string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("idle connection %d from %s: %v", len(conns), src, err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// closedWithin says which of conns the other end closed within d.
func closedWithin(conns []net.Conn, d time.Duration) []bool {
	closed := make([]bool, len(conns))
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for i, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(deadline)
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			closed[i] = !(errors.As(err, &ne) && ne.Timeout())
		})
	}
	wg.Wait()
	return closed
}

func count(bs []bool) (n int) {
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

type testPort struct {
	p    *Port
	ca   *pki.CA
	node *pki.Identity
	log  *testutil.SyncBuffer
}

func newTestPort(t *testing.T) *testPort {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	srv := identity(t, ca, "a")
	log := &testutil.SyncBuffer{}
	p, err := Listen(Config{
		Addr: "127.0.0.1:0",
		TLS:  srv.ServerConfig(),
		Allow: func(proto string, cs tls.ConnectionState) bool {
			return proto == pki.ProtoJoin || srv.Peer(cs, nil).Node != nil
		},
		Logger: slog.New(slog.NewTextHandler(log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	go echo(p.Listener(pki.ProtoRaft))
	return &testPort{p: p, ca: ca, node: identity(t, ca, "b"), log: log}
}

// Two hundred idle connections from one address take that address's
// share of handshakes, for a few seconds; a node elsewhere still gets in
// at once.
func TestIdleConnectionsDoNotStarveOthers(t *testing.T) {
	tp := newTestPort(t)
	addr := tp.p.Addr().String()
	start := time.Now()
	idle := dialFrom(t, "127.0.0.2", addr, 200)

	began := time.Now()
	if err := roundTrip(addr, tp.node.ClientConfig(pki.ProtoRaft, nil)); err != nil {
		t.Fatalf("a node beside 200 idle connections: %v", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("a node beside 200 idle connections took %s to get in", took)
	}
	// Over the limit from their address: closed at once. (All of them,
	// if the machine was so slow that the deadline passed meanwhile.)
	n := count(closedWithin(idle, time.Second))
	if over := len(idle) - maxPerSource; n < over || (n > over && time.Since(start) < handshakeTimeout) {
		t.Errorf("%d of %d idle connections closed at once; want all but %d", n, len(idle), maxPerSource)
	}
	// The rest: closed when the handshake deadline passes.
	if n := count(closedWithin(idle, handshakeTimeout+2*time.Second-time.Since(start))); n != len(idle) {
		t.Errorf("%d of %d idle connections closed within %s; want all", n, len(idle), handshakeTimeout+2*time.Second)
	}
	if handshakeTimeout > 5*time.Second {
		t.Errorf("handshake timeout %s; want a few seconds", handshakeTimeout)
	}
}

// Silent connections from sixteen addresses, sixteen each, hold every
// handshake slot of the port; a node at another address still gets in,
// in place of the oldest silent connection of the busiest address.
func TestManyAddressesDoNotStarveOthers(t *testing.T) {
	tp := newTestPort(t)
	addr := tp.p.Addr().String()
	var idle []net.Conn
	for i := range maxHandshakes / maxPerSource {
		idle = append(idle, dialFrom(t, fmt.Sprintf("127.0.0.%d", i+2), addr, maxPerSource)...)
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		tp.p.mu.Lock()
		defer tp.p.mu.Unlock()
		if tp.p.inFlight != maxHandshakes {
			return fmt.Errorf("%d handshakes in flight, want %d", tp.p.inFlight, maxHandshakes)
		}
		return nil
	})
	if err := roundTrip(addr, tp.node.ClientConfig(pki.ProtoRaft, nil)); err != nil {
		t.Fatalf("a node beside %d idle connections from %d addresses: %v", len(idle), maxHandshakes/maxPerSource, err)
	}
	tp.p.mu.Lock()
	defer tp.p.mu.Unlock()
	if tp.p.inFlight > maxHandshakes {
		t.Errorf("%d handshakes in flight, more than %d", tp.p.inFlight, maxHandshakes)
	}
}

// One certificate, stolen with a device, holds at most maxPerPeer
// connections of a protocol: the next is closed after its handshake, and
// one closed makes room again.
func TestConnectionsPerCertificateAreBounded(t *testing.T) {
	tp := newTestPort(t)
	addr := tp.p.Addr().String()
	cfg := tp.node.ClientConfig(pki.ProtoRaft, nil)
	var held []*tls.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for i := range maxPerPeer {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		held = append(held, c)
		// Echoed: the connection reached its protocol.
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	if err := roundTrip(addr, cfg); err == nil {
		t.Fatalf("connection %d of one certificate was served", maxPerPeer+1)
	}
	if !strings.Contains(tp.log.String(), "too many connections from one certificate") {
		t.Errorf("no warning logged:\n%s", tp.log.String())
	}
	held[0].Close()
	testutil.WaitFor(t, 5*time.Second, func() error { return roundTrip(addr, cfg) })
}

// A flood of refused connections writes a bounded number of warnings.
func TestRefusalsAreRateLimited(t *testing.T) {
	tp := newTestPort(t)
	addr := tp.p.Addr().String()
	anon := pki.PinnedConfig(tp.ca.Fingerprint(), pki.ProtoRaft, "the join token", nil)
	for range 300 {
		if err := roundTrip(addr, anon); err == nil {
			t.Fatal("an anonymous peer was served raft")
		}
	}
	// A connection beyond the per-source limit: its warning too.
	dialFrom(t, "127.0.0.3", addr, 300)
	if err := roundTrip(addr, tp.node.ClientConfig(pki.ProtoRaft, nil)); err != nil {
		t.Fatal(err)
	}
	tp.p.Close() // writes the counts
	var warns []string
	for _, l := range strings.Split(tp.log.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			warns = append(warns, l)
		}
	}
	if len(warns) > 20 {
		t.Errorf("%d warnings for 300 refused and 284 dropped connections; want a bounded few, first:\n%s", len(warns), strings.Join(warns[:20], "\n"))
	}
	if !strings.Contains(tp.log.String(), "more suppressed") {
		t.Errorf("no count of the suppressed warnings in:\n%s", strings.Join(warns, "\n"))
	}
}

// Running out of file descriptors (a flood of connections) pauses
// accepting; it does not close the port for good.
func TestAcceptSurvivesRunningOutOfFiles(t *testing.T) {
	tp := newTestPort(t)
	addr := tp.p.Addr().(*net.TCPAddr)
	// Sockets made while there are descriptors to spare, connected once
	// there are none, so that the port's accept finds none either.
	var socks []int
	defer func() {
		for _, fd := range socks {
			syscall.Close(fd)
		}
	}()
	for range 4 {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, fd)
	}
	var was syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &was); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	low := was
	low.Cur = uint64(len(fds) + 16)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restore := func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &was) }
	defer restore()
	var fill []*os.File
	closeFill := func() {
		for _, f := range fill {
			f.Close()
		}
		fill = nil
	}
	defer closeFill()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break // out of descriptors
		}
		fill = append(fill, f)
	}
	to := &syscall.SockaddrInet4{Port: addr.Port, Addr: [4]byte{127, 0, 0, 1}}
	for _, fd := range socks {
		if err := syscall.Connect(fd, to); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		if !strings.Contains(tp.log.String(), "cluster port: accept") {
			return fmt.Errorf("the port has not failed to accept yet")
		}
		return nil
	})
	closeFill()
	restore()
	began := time.Now()
	if err := roundTrip(addr.String(), tp.node.ClientConfig(pki.ProtoRaft, nil)); err != nil {
		t.Fatalf("after running out of files: %v\n%s", err, tp.log.String())
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("a node got in %s after the port ran out of files", took)
	}
}

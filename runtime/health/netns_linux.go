package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// dialInNetNS dials addr from inside the network namespace at path.
//
// A socket belongs to the namespace of the thread that created it, for
// life. So a fresh goroutine locks its OS thread, enters the namespace and
// dials there; it then exits still locked, and the Go runtime terminates the
// thread instead of running other goroutines on it in the wrong namespace.
// The connection it returns works from any goroutine.
func dialInNetNS(ctx context.Context, path, network, addr string) (net.Conn, error) {
	addr, err := literalAddr(addr)
	if err != nil {
		return nil, err
	}
	type dialed struct {
		conn net.Conn
		err  error
	}
	ch := make(chan dialed, 1)
	go func() {
		runtime.LockOSThread()
		// Never UnlockOSThread: this thread may be in another namespace.
		conn, err := dialLocked(ctx, path, network, addr)
		ch <- dialed{conn, err}
	}()
	// The dial honours ctx, so waiting for it is bounded.
	d := <-ch
	return d.conn, d.err
}

// dialLocked runs on a locked thread that is thrown away afterwards.
func dialLocked(ctx context.Context, path, network, addr string) (net.Conn, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	// With a literal address, net.Dialer resolves nothing and creates the
	// socket on this goroutine, hence on this thread.
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// literalAddr maps "localhost" to 127.0.0.1 and refuses other host names:
// the resolver would run on other threads, in the host's namespace, with
// the host's /etc/hosts and resolv.conf.
func literalAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if strings.EqualFold(host, "localhost") {
		return net.JoinHostPort("127.0.0.1", port), nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return "", fmt.Errorf("dial %s in a network namespace: want an IP address or localhost, not host name %q", addr, host)
	}
	return addr, nil
}

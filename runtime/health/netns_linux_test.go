package health

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newNetns creates a network namespace with loopback up, pinned by a bind
// mount on a file in t.TempDir(), and returns the file's path.
func newNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	path := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread is left in the new namespace and
		// must die with this goroutine.
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
			if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind mount %s: %w", self, err)
			}
			return loopbackUp()
		}()
	}()
	if err := <-errc; err != nil {
		unix.Unmount(path, unix.MNT_DETACH)
		t.Fatalf("new network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", path, err)
		}
	})
	return path
}

// loopbackUp sets lo up in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// listenIn listens on addr inside the network namespace at path.
func listenIn(t *testing.T, path, addr string) net.Listener {
	t.Helper()
	type listened struct {
		ln  net.Listener
		err error
	}
	ch := make(chan listened, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, as in newNetns
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- listened{nil, err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- listened{nil, err}
			return
		}
		ln, err := net.Listen("tcp", addr)
		ch <- listened{ln, err}
	}()
	l := <-ch
	if l.err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, path, l.err)
	}
	t.Cleanup(func() { l.ln.Close() })
	return l.ln
}

func serve(t *testing.T, ln net.Listener, code int, body string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
}

// The same loopback address answers 200 in the namespace and 503 on the
// host: a probe with NetNS reaches the former, one without the latter.
func TestProbeHTTPInNetNS(t *testing.T) {
	ns := newNetns(t)
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, host, http.StatusServiceUnavailable, "host")
	addr := host.Addr().String()
	serve(t, listenIn(t, ns, addr), http.StatusOK, "container")

	url := "http://" + addr + "/healthz"
	inside := Target{NetNS: ns}
	// Alternate many times: a thread left in the namespace and reused would
	// send some host probes into the container, or the reverse.
	for i := range 20 {
		if r := Probe(t.Context(), Check{HTTP: url}, inside); !r.OK || r.Output != "200 OK: container" {
			t.Fatalf("probe %d in the namespace = %+v; want 200 from the container", i, r)
		}
		if r := Probe(t.Context(), Check{HTTP: url}, Target{}); r.OK || r.Output != "503 Service Unavailable: host" {
			t.Fatalf("probe %d on the host = %+v; want 503 from the host", i, r)
		}
	}
	local := strings.Replace(url, "127.0.0.1", "localhost", 1)
	if r := Probe(t.Context(), Check{HTTP: local}, inside); !r.OK || r.Output != "200 OK: container" {
		t.Errorf("probe of %s in the namespace = %+v", local, r)
	}
}

// reservePort binds (without listening) a host loopback port so nothing on
// the host can accept on it while the test runs.
func reservePort(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*unix.SockaddrInet4).Port
}

func TestProbeTCPInNetNS(t *testing.T) {
	ns := newNetns(t)
	addr := fmt.Sprintf("127.0.0.1:%d", reservePort(t))
	listenIn(t, ns, addr)

	if r := Probe(t.Context(), Check{TCP: addr}, Target{NetNS: ns}); !r.OK || r.Err != nil {
		t.Errorf("probe in the namespace = %+v; want a connection", r)
	}
	if r := Probe(t.Context(), Check{TCP: addr}, Target{}); r.OK || !errors.Is(r.Err, syscall.ECONNREFUSED) {
		t.Errorf("probe on the host = %+v; want connection refused", r)
	}
	if r := Probe(t.Context(), Check{TCP: "localhost:" + strings.Split(addr, ":")[1]}, Target{NetNS: ns}); !r.OK {
		t.Errorf("probe of localhost in the namespace = %+v", r)
	}
}

func TestProbeTimeoutInNetNS(t *testing.T) {
	ns := newNetns(t)
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	srv.Listener = listenIn(t, ns, "127.0.0.1:0")
	srv.Start()
	defer srv.Close()
	defer close(release)

	start := time.Now()
	r := Probe(t.Context(), Check{HTTP: srv.URL, Timeout: 200 * time.Millisecond}, Target{NetNS: ns})
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("probe took %s with a 200ms timeout", took)
	}
	if r.OK || !errors.Is(r.Err, ErrTimeout) {
		t.Errorf("Probe = %+v; want ErrTimeout", r)
	}
}

func TestProbeNetNSErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone")
	r := Probe(t.Context(), Check{TCP: "127.0.0.1:80"}, Target{NetNS: missing})
	if r.OK || !errors.Is(r.Err, os.ErrNotExist) || !strings.Contains(r.Err.Error(), "open network namespace") {
		t.Errorf("probe in a missing namespace = %+v", r)
	}
	notNS := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notNS, nil, 0o600)
	r = Probe(t.Context(), Check{TCP: "127.0.0.1:80"}, Target{NetNS: notNS})
	if r.OK || !errors.Is(r.Err, unix.EINVAL) || !strings.Contains(r.Err.Error(), "enter network namespace") {
		t.Errorf("probe in a file that is no namespace = %+v", r)
	}
	r = Probe(t.Context(), Check{HTTP: "http://db.internal:8080/"}, Target{NetNS: "/proc/self/ns/net"})
	if r.OK || r.Err == nil || !strings.Contains(r.Err.Error(), `not host name "db.internal"`) {
		t.Errorf("probe of a host name in a namespace = %+v", r)
	}
}

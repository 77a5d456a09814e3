package health

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// fullListener returns the address of a listener whose accept queue is full,
// so that connecting to it hangs: the kernel drops the SYNs.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue (a backlog of 0 holds one); stop at the first that hangs.
	for range 4 {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill the listener's accept queue")
	return ""
}

func TestProbeTCPTimeout(t *testing.T) {
	addr := fullListener(t)
	start := time.Now()
	r := Probe(t.Context(), Check{TCP: addr, Timeout: 300 * time.Millisecond}, Target{})
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("probe took %s with a 300ms timeout", took)
	}
	if r.OK || !errors.Is(r.Err, ErrTimeout) {
		t.Errorf("Probe = %+v; want ErrTimeout", r)
	}
}

package health

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of the zero Check fields.
const (
	DefaultInterval = 10 * time.Second
	DefaultTimeout  = 5 * time.Second
	DefaultRetries  = 3
)

// Check is one health check of a container. Exactly one of HTTP, TCP and
// Exec is set.
type Check struct {
	// HTTP is a URL to GET, "http://127.0.0.1:8080/healthz"; a 2xx or 3xx
	// answer is healthy. Redirects are not followed.
	HTTP string
	// TCP is a "host:port" address; healthy when a connection opens.
	TCP string
	// Exec is a command run in the container; healthy on exit code 0.
	Exec []string

	// Interval is the wait before each probe (DefaultInterval when 0).
	Interval time.Duration
	// Timeout bounds one probe (DefaultTimeout when 0).
	Timeout time.Duration
	// StartPeriod is the time after the container started during which
	// failed probes do not count (0: none). A success in it still makes the
	// container healthy.
	StartPeriod time.Duration
	// Retries is the number of consecutive failures that make the
	// container unhealthy (DefaultRetries when 0).
	Retries int
}

// Target is the container a Check probes.
type Target struct {
	// NetNS is the path of the container's network namespace,
	// "/proc/<pid>/ns/net", or "" for the host network.
	NetNS string
	// Exec runs args in the container, copies its combined output to out
	// as it comes (out keeps what fits in MaxOutput and counts the rest),
	// and returns its exit code; err is for a command that could not be
	// run. It must return when ctx is done. Nil if the runtime cannot exec.
	Exec func(ctx context.Context, args []string, out io.Writer) (exitCode int, err error)
	// Busy reports whether the node has been saturated at any moment
	// since the time given (starting many containers at once, say). Run
	// then does not probe, and a probe that failed while it was says
	// more of the node than of the container and is not counted. Nil:
	// never.
	Busy func(since time.Time) bool
}

// Validate reports a Check that cannot be probed. Every error wraps
// ErrInvalidCheck.
func (c Check) Validate() error {
	var kinds []string
	if c.HTTP != "" {
		kinds = append(kinds, "HTTP")
	}
	if c.TCP != "" {
		kinds = append(kinds, "TCP")
	}
	if len(c.Exec) > 0 {
		kinds = append(kinds, "Exec")
	}
	switch len(kinds) {
	case 0:
		return fmt.Errorf("%w: set one of HTTP, TCP or Exec", ErrInvalidCheck)
	case 1:
	default:
		return fmt.Errorf("%w: set only one of HTTP, TCP or Exec, not %s", ErrInvalidCheck, strings.Join(kinds, " and "))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Interval", c.Interval}, {"Timeout", c.Timeout}, {"StartPeriod", c.StartPeriod}} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s is negative (%s)", ErrInvalidCheck, d.name, d.v)
		}
	}
	if c.Retries < 0 {
		return fmt.Errorf("%w: Retries is negative (%d)", ErrInvalidCheck, c.Retries)
	}
	switch {
	case c.HTTP != "":
		if _, err := parseHTTP(c.HTTP); err != nil {
			return fmt.Errorf("%w: HTTP %q: %v", ErrInvalidCheck, c.HTTP, err)
		}
	case c.TCP != "":
		if err := checkHostPort(c.TCP); err != nil {
			return fmt.Errorf("%w: TCP %q: %v", ErrInvalidCheck, c.TCP, err)
		}
	default:
		if c.Exec[0] == "" {
			return fmt.Errorf("%w: Exec has an empty command name", ErrInvalidCheck)
		}
	}
	return nil
}

// withDefaults fills the zero durations and retries.
func (c Check) withDefaults() Check {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	}
	return c
}

func parseHTTP(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("scheme must be http, not %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("no host")
	}
	if err := checkHostPort(hostPort(u)); err != nil {
		return nil, err
	}
	return u, nil
}

// hostPort is u's address with the http default port filled in.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

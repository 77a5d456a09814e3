package health

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxOutput bounds Result.Output, in bytes: it is for ps and logs.
const MaxOutput = 512

// Result is the outcome of one probe.
type Result struct {
	// OK is a healthy answer: HTTP 2xx or 3xx, a TCP connection, exit 0.
	OK bool
	// Output is the answer, shortened to MaxOutput: the HTTP status line
	// and the start of the body, the address connected to, or the
	// command's output (its exit code when it printed nothing).
	Output string
	// Dropped counts the bytes a command printed past the first MaxOutput:
	// read and thrown away, never held.
	Dropped int64
	// Err says why there was no answer: invalid check, dial or exec error,
	// ErrTimeout. A probe that got an unhealthy answer has OK false and Err
	// nil.
	Err error
	// Busy marks a failure that came while the node was saturated (see
	// Target.Busy) or too slow to run the probe in time: Decide does not
	// count it.
	Busy bool
}

// Summary is Output, or the error when there is no output: one line for
// ps and logs, ending with "... [N bytes dropped]" when the command printed
// more than MaxOutput bytes.
func (r Result) Summary() string {
	var s string
	switch {
	case r.Err == nil:
		s = r.Output
	case r.Output == "":
		s = shorten(r.Err.Error())
	default:
		s = shorten(r.Err.Error()) + ": " + r.Output
	}
	if r.Dropped > 0 {
		s += fmt.Sprintf(" ... [%d bytes dropped]", r.Dropped)
	}
	return s
}

// Probe runs c once against t, within c.Timeout. An invalid check is a
// failed probe with an error wrapping ErrInvalidCheck. It returns early
// when ctx ends.
func Probe(ctx context.Context, c Check, t Target) Result {
	if err := c.Validate(); err != nil {
		return Result{Err: err}
	}
	c = c.withDefaults()
	deadline := time.Now().Add(c.Timeout)
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	var r Result
	switch {
	case c.HTTP != "":
		r = probeHTTP(pctx, c.HTTP, t.NetNS)
	case c.TCP != "":
		r = probeTCP(pctx, c.TCP, t.NetNS)
	default:
		r = probeExec(pctx, c.Exec, t.Exec)
	}
	// The socket deadline may fire a moment before pctx's timer, so ask
	// the clock, not pctx. Say it plainly: "i/o timeout" or "context
	// deadline exceeded" from deep inside net/http do not tell which limit
	// ran out.
	if !r.OK && ctx.Err() == nil && !time.Now().Before(deadline) {
		if r.Err != nil {
			r.Err = fmt.Errorf("%w after %s: %w", ErrTimeout, c.Timeout, r.Err)
		} else {
			r.Err = fmt.Errorf("%w after %s", ErrTimeout, c.Timeout)
		}
	}
	r.Output = shorten(r.Output)
	return r
}

func probeHTTP(ctx context.Context, rawURL, netns string) Result {
	tr := &http.Transport{
		Proxy:                  nil, // never the daemon's HTTP_PROXY
		DialContext:            dialContext(netns),
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		// 3xx is healthy as it is; following could leave the container.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return Result{Err: err}
	}
	req.Header.Set("User-Agent", "shoal-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return Result{Err: err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxOutput))
	out := resp.Status
	if b := strings.TrimSpace(string(body)); b != "" {
		out += ": " + b
	}
	return Result{OK: resp.StatusCode >= 200 && resp.StatusCode < 400, Output: out}
}

func probeTCP(ctx context.Context, addr, netns string) Result {
	conn, err := dialContext(netns)(ctx, "tcp", addr)
	if err != nil {
		return Result{Err: err}
	}
	out := "connected to " + conn.RemoteAddr().String()
	conn.Close()
	return Result{OK: true, Output: out}
}

func probeExec(ctx context.Context, args []string, exec func(context.Context, []string, io.Writer) (int, error)) Result {
	if exec == nil {
		return Result{Err: ErrExecUnsupported}
	}
	w := newCapped(MaxOutput)
	code, err := exec(ctx, args, w)
	out, dropped := w.result()
	out = strings.TrimSpace(out)
	if err != nil {
		return Result{Output: out, Dropped: dropped, Err: fmt.Errorf("exec %s: %w", args[0], err)}
	}
	if code != 0 && out == "" {
		out = "exit code " + strconv.Itoa(code)
	}
	return Result{OK: code == 0, Output: out, Dropped: dropped}
}

// dialContext dials from the network namespace at netns, or from the host's
// when netns is "".
func dialContext(netns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if netns == "" {
		var d net.Dialer
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialInNetNS(ctx, netns, network, addr)
	}
}

// shorten trims space around s and cuts it to at most MaxOutput bytes
// (plus an ellipsis), at a rune boundary, as valid UTF-8.
func shorten(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > MaxOutput {
		cut := MaxOutput
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

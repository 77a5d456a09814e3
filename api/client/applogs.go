package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-edge/shoal/api"
)

// MaxLogLine bounds one line of AppLogs' output; a longer line is cut
// there and counted.
const MaxLogLine = 16 << 10

// LogOptions are the choices of `shoal logs`.
type LogOptions struct {
	Follow     bool
	Tail       int       // lines per instance; -1: all
	Timestamps bool      // start each line with the time it was written
	Since      time.Time // only lines written since; zero: all
}

// AppLogs copies the output of every instance of app to w, each line
// prefixed with its instance ("web/0 | "): instance after instance, or,
// when following, side by side so that new lines of all of them show. Each instance is asked
// of this node, which passes the request on to the node running it as for
// one instance. An instance whose output cannot be had is reported on errw
// at once, the others go on. It returns the number of lines cut at
// MaxLogLine, and an error when any instance failed.
func (c *Client) AppLogs(ctx context.Context, app string, opts LogOptions, w, errw io.Writer) (cut int, err error) {
	insts, err := c.PS(ctx, app)
	if err != nil {
		return 0, err
	}
	var idxs []int
	pending := ""
	for _, in := range insts {
		_, idx, ok := strings.Cut(in.Instance, "/")
		// An instance no node can take has no log anywhere.
		if n, err := strconv.Atoi(idx); ok && err == nil && in.App == app && in.Node != "" {
			idxs = append(idxs, n)
		} else if in.App == app && in.State == api.StatePending && pending == "" {
			pending = in.Error
		}
	}
	if len(idxs) == 0 {
		if pending != "" {
			return 0, fmt.Errorf("app %s has no instance on a node yet, so no log: its instances are pending (%s; shoal ps shows them)", app, pending)
		}
		return 0, fmt.Errorf("app %s has no instances", app)
	}
	sort.Ints(idxs)
	out := &lockedWriter{w: w}
	var wg sync.WaitGroup
	errs := make([]error, len(idxs))
	cuts := make([]int, len(idxs))
	read := func(i, idx int) {
		lw := &lineWriter{prefix: []byte(app + "/" + strconv.Itoa(idx) + " | "), out: out}
		errs[i] = c.Logs(ctx, app, idx, opts, lw)
		lw.flush()
		cuts[i] = lw.cut
		if errs[i] != nil {
			errs[i] = fmt.Errorf("logs of %s/%d: %w", app, idx, errs[i])
			out.mu.Lock()
			fmt.Fprintln(errw, errs[i])
			out.mu.Unlock()
		}
	}
	for i, idx := range idxs {
		if !opts.Follow {
			// One after the other: each instance's lines together, in
			// instance order, as the same command prints them every time.
			read(i, idx)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			read(i, idx)
		}()
	}
	wg.Wait()
	failed := 0
	for i := range idxs {
		cut += cuts[i]
		if errs[i] != nil {
			failed++
		}
	}
	if failed > 0 {
		return cut, fmt.Errorf("logs of %d of %d instances of %s could not be read (said above)", failed, len(idxs), app)
	}
	return cut, nil
}

// lockedWriter writes whole lines of several instances, one at a time.
type lockedWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (l *lockedWriter) line(prefix, line []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(prefix); err != nil {
		return err
	}
	_, err := l.w.Write(line)
	return err
}

// lineWriter splits a stream into lines, prefixes each and hands whole lines
// to out. It holds at most MaxLogLine bytes of a line: the rest of a longer
// line is dropped and the line counted in cut.
type lineWriter struct {
	prefix  []byte
	out     *lockedWriter
	buf     []byte
	cutting bool // dropping the rest of a line that went over the bound
	cut     int
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !l.cutting {
			if room := MaxLogLine - len(l.buf); len(chunk) > room {
				l.buf = append(l.buf, chunk[:room]...)
				l.cutting = true
				l.cut++
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		if i < 0 {
			break
		}
		l.buf = append(l.buf, '\n')
		if err := l.out.line(l.prefix, l.buf); err != nil {
			return 0, err
		}
		l.buf, l.cutting = l.buf[:0], false
		p = p[i+1:]
	}
	return n, nil
}

// flush writes a last line that had no newline.
func (l *lineWriter) flush() {
	if len(l.buf) > 0 {
		l.buf = append(l.buf, '\n')
		l.out.line(l.prefix, l.buf)
		l.buf = l.buf[:0]
	}
}

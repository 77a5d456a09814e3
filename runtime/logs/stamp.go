package logs

import (
	"bytes"
	"io"
	"sync"
	"time"
)

// The time of each line.
//
// A Stamped writer starts every line it writes with stampMark, the time in
// stampLayout (UTC, fixed width) and a space. Readers give the lines back
// through a Filter, which takes the stamps off, renders them for
// `--timestamps` and drops lines before `--since`. Files written before
// lines were stamped, or by a container monitor of that time, have no
// stamps: a Filter shows their lines without a time and counts them as
// older than any --since.

const (
	stampMark   = '\x1e' // ASCII record separator: never the start of a text line
	stampLayout = "2006-01-02T15:04:05.000000000Z"
	stampLen    = 1 + len(stampLayout) + 1
)

// Stamped writes lines to a Writer, each started with the time it was
// written (the time of the Write that began it). It is safe for concurrent
// use.
type Stamped struct {
	w   *Writer
	now func() time.Time

	mu  sync.Mutex // guards following
	mid bool       // the last write ended inside a line
	buf []byte
}

// Stamp returns a Stamped writing to w, with now as its clock.
func Stamp(w *Writer, now func() time.Time) *Stamped {
	return &Stamped{w: w, now: now}
}

// Write stamps the lines p begins and appends them.
func (s *Stamped) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var stamp [stampLen]byte
	stamp[0] = stampMark
	s.now().UTC().AppendFormat(stamp[1:1], stampLayout)
	stamp[stampLen-1] = ' '
	s.buf = s.buf[:0]
	for rest := p; len(rest) > 0; {
		if !s.mid {
			s.buf = append(s.buf, stamp[:]...)
		}
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			s.buf = append(s.buf, rest...)
			s.mid = true
			break
		}
		s.buf = append(s.buf, rest[:i+1]...)
		s.mid = false
		rest = rest[i+1:]
	}
	if _, err := s.w.Write(s.buf); err != nil {
		return 0, err
	}
	if cap(s.buf) > 64<<10 {
		s.buf = nil // do not keep a rare big write's buffer
	}
	return len(p), nil
}

// Close closes the Writer.
func (s *Stamped) Close() error { return s.w.Close() }

// FilterOptions choose what a Filter passes on.
type FilterOptions struct {
	Timestamps bool      // start each line with its time (RFC 3339, UTC) and a space
	Since      time.Time // drop lines written before; zero: keep all
}

// Filter copies log file content to an io.Writer, line by line, without
// the stamps. It holds at most one stamp's bytes, whatever the line length.
// It is not safe for concurrent use; call Flush when the content ends.
type Filter struct {
	w    io.Writer
	opts FilterOptions

	head  []byte // the start of the current line, until it is known whether it is stamped
	start bool   // at the start of a line (or of the content)
	drop  bool   // the current line is before Since
	last  time.Time
}

// NewFilter returns a Filter writing to w.
func NewFilter(w io.Writer, opts FilterOptions) *Filter {
	return &Filter{w: w, opts: opts, start: true, head: make([]byte, 0, stampLen)}
}

// Write passes p on, filtered.
func (f *Filter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if f.start {
			take := min(stampLen-len(f.head), len(p))
			if i := bytes.IndexByte(p[:take], '\n'); i >= 0 {
				take = i + 1
			}
			f.head = append(f.head, p[:take]...)
			p = p[take:]
			if len(f.head) < stampLen && f.head[len(f.head)-1] != '\n' {
				continue
			}
			if err := f.lineStart(); err != nil {
				return 0, err
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i+1]
			f.start = true
		}
		if !f.drop {
			if _, err := f.w.Write(chunk); err != nil {
				return 0, err
			}
		}
		p = p[len(chunk):]
	}
	return n, nil
}

// lineStart decides about the line whose first bytes are in f.head and
// writes what of them is to be shown.
func (f *Filter) lineStart() error {
	head := f.head
	f.head = f.head[:0]
	f.start = head[len(head)-1] == '\n'
	t, stamped := parseStamp(head)
	if stamped {
		head = head[stampLen:]
		f.last = t
	} else {
		// A line without a stamp: written before lines were stamped, or
		// the rest of a line longer than a whole file. It belongs with
		// the line before it.
		t = f.last
	}
	f.drop = !f.opts.Since.IsZero() && (t.IsZero() || t.Before(f.opts.Since))
	if f.drop {
		return nil
	}
	if f.opts.Timestamps && !t.IsZero() {
		if _, err := f.w.Write(t.AppendFormat(make([]byte, 0, 40), time.RFC3339Nano+" ")); err != nil {
			return err
		}
	}
	_, err := f.w.Write(head)
	return err
}

// Flush writes a last line that ended without a newline.
func (f *Filter) Flush() error {
	if f.start && len(f.head) > 0 {
		return f.lineStart()
	}
	return nil
}

func parseStamp(head []byte) (time.Time, bool) {
	if len(head) < stampLen || head[0] != stampMark || head[stampLen-1] != ' ' {
		return time.Time{}, false
	}
	t, err := time.Parse(stampLayout, string(head[1:stampLen-1]))
	return t, err == nil
}

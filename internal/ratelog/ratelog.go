// Package ratelog bounds how many log lines a flood of events can write. A
// Handler passes the first Burst records of each kind in an Interval to the
// handler it wraps, counts the rest, and when the interval ends writes one
// record per kind saying how many it suppressed ("4995 more suppressed in
// 10s" like="Decrypt packet failed: ...").
//
// It is for logs that strangers can cause: every bad gossip packet or TLS
// handshake is one line from memberlist or the cluster port, and without a
// bound a few thousand packets a second fill the disk and bury what
// matters.
//
// # Basics
//
// Records below MinLevel pass untouched. A record's kind is its level and
// its message with the digits taken out, so "from=10.0.0.7:41234" and
// "from=10.0.0.9:5111" are one kind; at most maxKinds kinds are told apart
// in an interval, the rest share one count. Handlers made by WithAttrs and
// WithGroup share their parent's counts. A count's record has the level,
// the attributes and, as "like", the message of the first record of its
// kind. Close writes the counts not yet written and stops the timer that
// writes them; after it, each kind passes one more burst and the rest is
// dropped uncounted (a peer's flood that outlives its listener, logged by
// goroutines that end after the Close, must stay bounded too).
package ratelog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
)

// maxKinds bounds the kinds told apart in one interval: the messages may
// carry text a stranger chose.
const maxKinds = 64

// Config says how much a Handler passes.
type Config struct {
	// Burst is how many records of one kind pass in an interval.
	Burst int
	// Interval is the period over which records are counted.
	Interval time.Duration
	// MinLevel is the lowest level limited; records below it all pass.
	MinLevel slog.Level
}

// DefaultConfig passes five warnings or errors of a kind per ten seconds.
func DefaultConfig() Config {
	return Config{Burst: 5, Interval: 10 * time.Second, MinLevel: slog.LevelWarn}
}

// Handler is a rate-limiting slog.Handler.
type Handler struct {
	next slog.Handler
	s    *state
}

type state struct {
	cfg Config

	mu     sync.Mutex // guards following
	start  time.Time  // of the current interval
	kinds  map[string]*kind
	timer  *time.Timer // writes the counts at the interval's end; nil if none is due
	closed bool
}

// kind is one kind of record in the current interval.
type kind struct {
	level      slog.Level
	msg        string       // the first record's message
	h          slog.Handler // the first record's handler, attributes and all
	passed     int
	suppressed int
}

// New wraps next. A zero Burst or Interval takes DefaultConfig's.
func New(next slog.Handler, cfg Config) *Handler {
	def := DefaultConfig()
	if cfg.Burst <= 0 {
		cfg.Burst = def.Burst
	}
	if cfg.Interval <= 0 {
		cfg.Interval = def.Interval
	}
	return &Handler{next: next, s: &state{cfg: cfg, start: time.Now(), kinds: map[string]*kind{}}}
}

// Enabled is next's.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// WithAttrs shares h's counts.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(as), s: h.s}
}

// WithGroup shares h's counts.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), s: h.s}
}

// Handle passes r on, or counts it when its kind had its burst.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < h.s.cfg.MinLevel {
		return h.next.Handle(ctx, r)
	}
	pass, due := h.s.count(h, r)
	write(due)
	if !pass {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// Close writes the counts not yet written; after it, each kind passes one
// more burst, and nothing more.
func (h *Handler) Close() {
	h.s.mu.Lock()
	h.s.closed = true
	if h.s.timer != nil {
		h.s.timer.Stop()
		h.s.timer = nil
	}
	due := h.s.roll(time.Now())
	h.s.mu.Unlock()
	write(due)
}

// count decides whether r passes; due are the summaries of an interval
// that ended, to be written outside the lock.
func (s *state) count(h *Handler, r slog.Record) (pass bool, due []summary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if !s.closed && now.Sub(s.start) >= s.cfg.Interval {
		due = s.roll(now)
	}
	key := kindOf(r.Level, r.Message)
	k, ok := s.kinds[key]
	if !ok {
		if len(s.kinds) >= maxKinds {
			key = "other"
			k = s.kinds[key]
		}
		if k == nil {
			k = &kind{level: r.Level, msg: r.Message, h: h.next}
			if key == "other" {
				k.msg = "log lines of other kinds"
			}
			s.kinds[key] = k
		}
	}
	if k.passed < s.cfg.Burst {
		k.passed++
		return true, due
	}
	if s.closed {
		return false, due // nobody would write its count
	}
	k.suppressed++
	if s.timer == nil {
		s.timer = time.AfterFunc(s.start.Add(s.cfg.Interval).Sub(now), s.tick)
	}
	return false, due
}

// tick writes the counts of the interval that ended.
func (s *state) tick() {
	s.mu.Lock()
	s.timer = nil
	var due []summary
	if !s.closed {
		due = s.roll(time.Now())
	}
	s.mu.Unlock()
	write(due)
}

// roll ends the current interval at now and returns its summaries.
func (s *state) roll(now time.Time) []summary {
	var due []summary
	took := now.Sub(s.start).Round(time.Second)
	for _, k := range s.kinds {
		if k.suppressed > 0 {
			r := slog.NewRecord(now, k.level, fmt.Sprintf("%d more suppressed in %s", k.suppressed, took), 0)
			r.AddAttrs(slog.String("like", k.msg))
			due = append(due, summary{h: k.h, r: r})
		}
	}
	clear(s.kinds)
	s.start = now
	return due
}

type summary struct {
	h slog.Handler
	r slog.Record
}

func write(due []summary) {
	for _, d := range due {
		_ = d.h.Handle(context.Background(), d.r)
	}
}

// kindOf is a record's kind: its level and its message without digits.
func kindOf(l slog.Level, msg string) string {
	return l.String() + " " + strings.Map(func(r rune) rune {
		if unicode.IsDigit(r) {
			return -1
		}
		return r
	}, msg)
}

package cluster

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-edge/shoal/internal/ratelog"
)

// peerLogger is the log of what other machines make happen: memberlist's
// and Raft's. A stranger can cause its lines (every gossip packet under the
// wrong key is an ERROR from memberlist), so each kind of warning or error
// passes a few times per interval and is then counted, "N more
// suppressed". Close the handler with the node.
func peerLogger(l *slog.Logger) (*slog.Logger, *ratelog.Handler) {
	h := ratelog.New(l.Handler(), ratelog.DefaultConfig())
	return slog.New(h), h
}

// hclogFor adapts slog for raft and raft-wal, which speak hclog.
func hclogFor(l *slog.Logger, name string) hclog.Logger {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: name, Output: io.Discard, Level: hclog.Off})
	il.RegisterSink(sink{l})
	return il
}

type sink struct{ l *slog.Logger }

func (s sink) Accept(name string, level hclog.Level, msg string, args ...any) {
	lvl := slog.LevelInfo
	switch level {
	case hclog.Trace, hclog.Debug:
		lvl = slog.LevelDebug
	case hclog.Warn:
		lvl = slog.LevelWarn
	case hclog.Error:
		lvl = slog.LevelError
	}
	attrs := append([]any{"component", name}, args...)
	for i, a := range attrs {
		// Raft logs its configurations as hclog.Fmt("%+v", ...), which
		// only hclog's own formatter expands.
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				attrs[i] = fmt.Sprintf(format, f[1:]...)
			}
		}
	}
	s.l.Log(context.Background(), lvl, msg, attrs...)
}

// stdlogFor adapts slog for memberlist, which speaks the standard logger
// with "[LEVEL] memberlist: ..." prefixes.
func stdlogFor(l *slog.Logger) *log.Logger {
	return log.New(levelWriter{l.With("component", "memberlist")}, "", 0)
}

type levelWriter struct{ l *slog.Logger }

func (w levelWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	lvl := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[INFO]": slog.LevelInfo} {
		if strings.HasPrefix(msg, prefix) {
			lvl, msg = l, strings.TrimSpace(strings.TrimPrefix(msg, prefix))
		}
	}
	msg = strings.TrimPrefix(msg, "memberlist: ")
	w.l.Log(context.Background(), lvl, msg)
	return len(p), nil
}

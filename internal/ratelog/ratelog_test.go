package ratelog

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// linesOf is what the logger wrote, a line each.
func linesOf(out *testutil.SyncBuffer) []string {
	return strings.Split(strings.TrimSpace(out.String()), "\n")
}

func newLogger(out *testutil.SyncBuffer) (*slog.Logger, *Handler) {
	h := New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}), Config{Burst: 3, Interval: 10 * time.Second, MinLevel: slog.LevelWarn})
	return slog.New(h), h
}

// A flood of one kind writes its burst, then one count per interval, also
// when the flood has stopped by then.
func TestFloodIsCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &testutil.SyncBuffer{}
		log, h := newLogger(out)
		defer h.Close()
		ml := log.With("component", "memberlist")
		for i := range 5000 {
			ml.Error(fmt.Sprintf("Decrypt packet failed: bad key from=127.0.0.1:%d", 1000+i))
		}
		log.Info("info passes", "n", 1)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		got := linesOf(out)
		want := []string{
			`level=ERROR msg="Decrypt packet failed: bad key from=127.0.0.1:1000" component=memberlist`,
			`level=ERROR msg="Decrypt packet failed: bad key from=127.0.0.1:1001" component=memberlist`,
			`level=ERROR msg="Decrypt packet failed: bad key from=127.0.0.1:1002" component=memberlist`,
			`level=INFO msg="info passes" n=1`,
			`level=ERROR msg="4997 more suppressed in 10s" component=memberlist like="Decrypt packet failed: bad key from=127.0.0.1:1000"`,
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// A new interval passes a new burst.
		ml.Error("Decrypt packet failed: bad key from=127.0.0.1:9")
		if got := linesOf(out); len(got) != len(want)+1 {
			t.Errorf("after the interval: %d lines, want %d", len(got), len(want)+1)
		}
	})
}

// Messages a stranger varies cannot make kinds without end.
func TestKindsAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &testutil.SyncBuffer{}
		log, h := newLogger(out)
		for i := range 10000 {
			log.Warn("unknown message type " + strings.Repeat("x", i%500))
		}
		h.Close()
		got := linesOf(out)
		// maxKinds kinds with their burst and their count, plus the rest
		// together.
		if max := (maxKinds+1)*3 + maxKinds + 1; len(got) > max {
			t.Errorf("%d lines for 10000 records; want at most %d", len(got), max)
		}
		if last := got[len(got)-1]; !strings.Contains(last, "more suppressed") {
			t.Errorf("last line %q; want a count", last)
		}
	})
}

// A flood that goes on after Close (a listener's goroutines logging as it
// shuts down) passes one more burst, not everything.
func TestFloodAfterCloseIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &testutil.SyncBuffer{}
		log, h := newLogger(out)
		log.Error("failed to receive from=127.0.0.1:1")
		h.Close()
		before := len(linesOf(out))
		for i := range 500 {
			log.Error(fmt.Sprintf("failed to receive from=127.0.0.1:%d", 1000+i))
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := len(linesOf(out)) - before; got != 3 {
			t.Errorf("%d lines after Close for 500 records of one kind; want the burst of 3", got)
		}
	})
}

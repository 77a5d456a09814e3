package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// Raft's configuration lines reach the node's log formatted, not as the
// format string followed by its arguments.
func TestHclogFormatArgsAreExpanded(t *testing.T) {
	var buf bytes.Buffer
	l := hclogFor(slog.New(slog.NewTextHandler(&buf, nil)), "raft")
	l.Info("initial configuration", "servers", hclog.Fmt("%+v", []struct{ ID string }{{"a"}}))
	if got := buf.String(); !strings.Contains(got, "servers=[{ID:a}]") {
		t.Fatalf("log line %q, want servers=[{ID:a}]", got)
	}
}

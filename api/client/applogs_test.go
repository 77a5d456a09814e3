package client

import (
	"bytes"
	"strings"
	"testing"
)

// Lines are prefixed whole, whatever the write boundaries; a line over
// MaxLogLine is cut there and counted, and a last line without a newline
// still comes out.
func TestLineWriter(t *testing.T) {
	var out bytes.Buffer
	lw := &lineWriter{prefix: []byte("web/1 | "), out: &lockedWriter{w: &out}}
	long := strings.Repeat("x", MaxLogLine+10)
	for _, p := range []string{"a", "b\nc\n", long[:100], long[100:] + "\n", "d"} {
		if n, err := lw.Write([]byte(p)); err != nil || n != len(p) {
			t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
		}
	}
	lw.flush()
	want := "web/1 | ab\nweb/1 | c\nweb/1 | " + long[:MaxLogLine] + "\nweb/1 | d\n"
	if out.String() != want {
		t.Fatalf("got %d bytes, want %d:\n%.200q", out.Len(), len(want), out.String())
	}
	if lw.cut != 1 {
		t.Fatalf("cut %d lines, want 1", lw.cut)
	}
	if cap(lw.buf) > 2*MaxLogLine {
		t.Fatalf("line buffer grew to %d bytes", cap(lw.buf))
	}
}

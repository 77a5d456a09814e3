package linux

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// An error pipe whose writer never stops (a hostile or broken init) gives
// an error after maxInitError bytes; awaitExec neither waits for the end
// nor holds what comes after.
func TestAwaitExecEndlessErrors(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	written := make(chan int64, 1)
	go func() {
		defer w.Close()
		line := []byte(strings.Repeat("x", 4096))
		var n int64
		for {
			k, err := w.Write(line)
			n += int64(k)
			if err != nil {
				written <- n
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err = awaitExec(ctx, r)
	took := time.Since(start)
	r.Close() // the writer fails with EPIPE and stops
	<-written
	if err == nil || ctx.Err() != nil {
		t.Fatalf("awaitExec = %v after %s (ctx %v); want an error as soon as the limit is passed", err, took, ctx.Err())
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "container init failed: xxx") || !strings.Contains(msg, "the rest dropped") || len(msg) > 1024 {
		t.Errorf("error %.200q (%d bytes); want the start of the output and a note that the rest was dropped", msg, len(msg))
	}
}

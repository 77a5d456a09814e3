package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, w *Writer, s string) {
	t.Helper()
	if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func TestRotateAtBoundary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, 10, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	write(t, w, "12345\n")
	write(t, w, "abc\n") // exactly 10: no rotation
	if got := read(t, path); got != "12345\nabc\n" {
		t.Fatalf("log = %q", got)
	}
	if _, err := os.Stat(path + ".1"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("rotated at exactly maxSize: %v", err)
	}
	write(t, w, "x\n") // 12 > 10: rotate first
	if got := read(t, path); got != "x\n" {
		t.Errorf("log after rotation = %q", got)
	}
	if got := read(t, path+".1"); got != "12345\nabc\n" {
		t.Errorf("log.1 = %q", got)
	}
	// A write that does not fit is cut after its last newline that does.
	write(t, w, "ab\ncd\nef\ngh\n")
	if got, got1 := read(t, path), read(t, path+".1"); got != "ef\ngh\n" || got1 != "x\nab\ncd\n" {
		t.Errorf("log = %q, log.1 = %q", got, got1)
	}
	// A line longer than a file is split.
	write(t, w, "0123456789abcdef\n")
	if got, got1, got2 := read(t, path), read(t, path+".1"), read(t, path+".2"); got != "abcdef\n" || got1 != "0123456789" || got2 != "ef\ngh\n" {
		t.Errorf("log = %q, log.1 = %q, log.2 = %q", got, got1, got2)
	}
}

func TestKeepCount(t *testing.T) {
	for _, keep := range []int{1, 2, 3, 5} {
		t.Run(fmt.Sprint(keep), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "c.log")
			w, err := Open(path, 4, keep)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				write(t, w, fmt.Sprintf("%d\n", i)) // 2 bytes: 2 lines a file
			}
			w.Close()
			ents, _ := os.ReadDir(dir)
			if len(ents) != keep {
				t.Errorf("%d files, want %d", len(ents), keep)
			}
			if got := read(t, path); got != "8\n9\n" {
				t.Errorf("current = %q", got)
			}
			if keep > 1 {
				if got := read(t, numbered(path, keep-1)); got != fmt.Sprintf("%d\n%d\n", 10-2*keep, 11-2*keep) {
					t.Errorf("oldest = %q", got)
				}
			}
		})
	}
}

func TestReopenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, _ := Open(path, 10, 2)
	write(t, w, "aaaaaa\n")
	w.Close()
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
	w, _ = Open(path, 10, 2)
	defer w.Close()
	write(t, w, "bbbbbb\n") // the size on disk counts: rotate
	if read(t, path) != "bbbbbb\n" || read(t, path+".1") != "aaaaaa\n" {
		t.Errorf("log %q, log.1 %q", read(t, path), read(t, path+".1"))
	}
}

func TestConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, _ := Open(path, 1000, 50)
	defer w.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				fmt.Fprintf(w, "g%d-%03d\n", g, i)
			}
		})
	}
	wg.Wait()
	all, err := tailString(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(all, "\n"), "\n")
	if len(lines) != 800 {
		t.Fatalf("%d lines, want 800", len(lines))
	}
	for _, l := range lines {
		if len(l) != 6 {
			t.Fatalf("torn line %q", l)
		}
	}
}

func TestTailAcrossFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, _ := Open(path, 7, 3)
	for i := range 7 {
		write(t, w, fmt.Sprintf("l%d\n", i)) // 3 bytes: 2 lines a file
	}
	write(t, w, "part") // no newline yet
	w.Close()
	// Files: c.log.2 = l2 l3, c.log.1 = l4 l5, c.log = l6 "part".
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, ""},
		{1, "part"},
		{2, "l6\npart"},
		{3, "l5\nl6\npart"},
		{5, "l3\nl4\nl5\nl6\npart"},
		{6, "l2\nl3\nl4\nl5\nl6\npart"},
		{100, "l2\nl3\nl4\nl5\nl6\npart"},
		{-1, "l2\nl3\nl4\nl5\nl6\npart"},
	} {
		got, err := tailString(path, tc.n)
		if err != nil || got != tc.want {
			t.Errorf("Tail(%d) = %q, %v; want %q", tc.n, got, err, tc.want)
		}
	}
	if _, err := Tail(path+".nope", 1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Tail of a missing log: %v", err)
	}
}

func TestTailLongFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	var want bytes.Buffer
	w, _ := Open(path, 1<<30, 1)
	for i := range 20000 {
		line := fmt.Sprintf("line %05d %s\n", i, strings.Repeat("x", 20))
		write(t, w, line)
		if i >= 20000-3000 {
			want.WriteString(line)
		}
	}
	w.Close()
	got, err := tailString(path, 3000)
	if err != nil || got != want.String() {
		t.Errorf("Tail(3000): %d bytes, %v; want %d bytes", len(got), err, want.Len())
	}
}

func tailString(path string, n int) (string, error) {
	r, err := Tail(path, n)
	if err != nil {
		return "", err
	}
	defer r.Close()
	var b strings.Builder
	_, err = io.Copy(&b, r)
	return b.String(), err
}

// Tail streams: whatever the size of the files and of their lines, it
// holds about one chunk, not the log.
func TestTailBoundedMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	const size = 16 << 20
	w, _ := Open(path, size, 3)
	// Three files of one line each (a line longer than a file is split),
	// no newline but the last: the search for where the lines begin crosses
	// a whole file backwards.
	line := bytes.Repeat([]byte("x"), 1<<20)
	for range 3*size/len(line) - 1 {
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	write(t, w, "end\n")
	w.Close()
	for _, n := range []int{1, 2, -1} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r, err := Tail(path, n)
		if err != nil {
			t.Fatal(err)
		}
		var tail [4]byte
		got, err := io.Copy(lastBytes(tail[:]), r)
		r.Close()
		runtime.ReadMemStats(&after)
		if err != nil || got < size-int64(len(line)) || string(tail[:]) != "end\n" {
			t.Errorf("Tail(%d) copied %d bytes ending %q, %v; want the current file's %d bytes or more, ending \"end\\n\"", n, got, tail, err, size-len(line)+4)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Errorf("Tail(%d) of %d MiB allocated %d bytes; want about one chunk", n, 3*size>>20, grew)
		}
	}
}

// lastBytes keeps the last len(b) bytes written to it.
type lastBytesWriter struct{ b []byte }

func lastBytes(b []byte) io.Writer { return &lastBytesWriter{b} }

func (w *lastBytesWriter) Write(p []byte) (int, error) {
	if len(p) >= len(w.b) {
		copy(w.b, p[len(p)-len(w.b):])
	} else {
		copy(w.b, w.b[len(p):])
		copy(w.b[len(w.b)-len(p):], p)
	}
	return len(p), nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 5*time.Second, func() error {
		if !cond() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

// followed starts Follow and returns what it copied, without the "s\n"
// lines written until one came through (which shows Follow is running).
func followed(t *testing.T, ctx context.Context, path string, w *Writer) (func() string, <-chan error) {
	t.Helper()
	out := &testutil.SyncBuffer{}
	done := make(chan error, 1)
	go func() { done <- Follow(ctx, path, out) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "s\n") {
		if time.Now().After(deadline) {
			t.Fatal("Follow copies nothing")
		}
		write(t, w, "s\n")
		time.Sleep(PollInterval / 4)
	}
	return func() string { return strings.TrimLeft(out.String(), "s\n") }, done
}

func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, _ := Open(path, 20, 3)
	defer w.Close()
	write(t, w, "before\n") // not followed: Follow starts at the end
	ctx, cancel := context.WithCancel(t.Context())
	got, done := followed(t, ctx, path, w)
	write(t, w, "one\n")
	waitFor(t, "one", func() bool { return got() == "one\n" })
	// Fill up and rotate: the tail of the old file and the new file both
	// reach the follower, in order.
	rotated := false
	var want strings.Builder
	want.WriteString("one\n")
	for i := 0; !rotated; i++ {
		line := fmt.Sprintf("line %d\n", i)
		write(t, w, line)
		want.WriteString(line)
		_, err := os.Stat(path + ".1")
		rotated = err == nil
	}
	write(t, w, "last\n")
	want.WriteString("last\n")
	waitFor(t, "lines after rotation", func() bool { return got() == want.String() })
	// A truncated file is read again from its start.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("x\n") // shorter than what the file had
	f.Close()
	waitFor(t, "x", func() bool { return got() == want.String()+"x\n" })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Follow: %v", err)
	}
}

func TestFollowMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	out := &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Follow(ctx, path, out) }()
	w, err := Open(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Follow may have seen the file missing (then it reads it from the
	// start) or not (then from its end): either way it goes on.
	waitFor(t, "hello", func() bool {
		write(t, w, "hello\n")
		return strings.Contains(out.String(), "hello\n")
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Follow: %v", err)
	}
}

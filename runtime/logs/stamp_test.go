package logs

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Lines are stamped with the time of the write that began them, whatever
// the write boundaries, and a Filter gives back the plain content, the
// times, or the lines since a time; unstamped (older) lines stay readable.
func TestStampAndFilter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := Open(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// An old file's content, from before lines were stamped.
	write(t, w, "old line\n")
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	clock := t0
	s := Stamp(w, func() time.Time { return clock })
	for _, p := range []string{"first", " line\nsecond line\n"} {
		if _, err := s.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	clock = t0.Add(time.Minute)
	s.Write([]byte("third line\nunfinished"))
	s.Close()

	for _, tc := range []struct {
		name string
		opts FilterOptions
		want string
	}{
		{"plain", FilterOptions{}, "old line\nfirst line\nsecond line\nthird line\nunfinished"},
		{"timestamps", FilterOptions{Timestamps: true},
			"old line\n2026-12-07T10:00:00Z first line\n2026-12-07T10:00:00Z second line\n" +
				"2026-12-07T10:01:00Z third line\n2026-12-07T10:01:00Z unfinished"},
		{"since", FilterOptions{Since: t0.Add(time.Second)}, "third line\nunfinished"},
		{"since the first", FilterOptions{Since: t0}, "first line\nsecond line\nthird line\nunfinished"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Tail(path, -1)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			// Byte by byte: a stamp split across writes is still read.
			var out bytes.Buffer
			f := NewFilter(&out, tc.opts)
			b := make([]byte, 1)
			for {
				n, err := r.Read(b)
				if n > 0 {
					f.Write(b[:n])
				}
				if err != nil {
					break
				}
			}
			f.Flush()
			if out.String() != tc.want {
				t.Fatalf("got\n%q\nwant\n%q", out.String(), tc.want)
			}
		})
	}
}

// A line longer than a file is split by the Writer; its rest has no stamp
// and is kept with the line it belongs to.
func TestFilterLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := Open(path, 100, 3)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	s := Stamp(w, func() time.Time { return t0 })
	long := strings.Repeat("x", 150) + "\n"
	s.Write([]byte(long))
	s.Close()
	r, err := Tail(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out bytes.Buffer
	f := NewFilter(&out, FilterOptions{Since: t0})
	var buf bytes.Buffer
	buf.ReadFrom(r)
	f.Write(buf.Bytes())
	f.Flush()
	if out.String() != strings.Repeat("x", 150)+"\n" {
		t.Fatalf("got %q", out.String())
	}
}

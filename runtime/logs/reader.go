package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"syscall"
	"time"
)

// maxRotated bounds how many rotated files Tail looks for.
const maxRotated = 100

// chunk is how much Tail and Follow read at a time.
const chunk = 32 << 10

// Tail returns a reader of the last n lines of the log at path, reading back
// through path.1, path.2, ... as far as needed; n < 0 reads everything. A
// last line without a newline counts as a line. A missing log is an error
// wrapping fs.ErrNotExist. The caller closes the reader.
//
// Tail holds one chunk in memory whatever the size of the files or of their
// lines: it finds where the lines begin by reading backwards, and the
// reader copies from there. It reads the files as they were when Tail
// opened them, up to their sizes then: a rotation or a write after that
// changes nothing of what it returns.
func Tail(path string, n int) (io.ReadCloser, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("tail log: %w", err)
	}
	t := &tail{}
	buf := make([]byte, chunk)
	need := n
	for i := 0; i < maxRotated && (n < 0 || need > 0); i++ {
		f, err := os.Open(numbered(path, i))
		if errors.Is(err, fs.ErrNotExist) {
			if i == 0 {
				continue // rotated away between Stat and open
			}
			break
		}
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("tail log: %w", err)
		}
		t.files = append(t.files, f)
		end, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("tail log: %w", err)
		}
		off := int64(0)
		if n >= 0 {
			var lines int
			if off, lines, err = lineStart(f, end, need, buf); err != nil {
				t.Close()
				return nil, fmt.Errorf("tail log %s: %w", f.Name(), err)
			}
			need -= lines
		}
		t.parts = append(t.parts, io.NewSectionReader(f, off, end-off))
	}
	slices.Reverse(t.parts) // oldest first
	t.r = io.MultiReader(t.parts...)
	return t, nil
}

// tail reads sections of the files it holds open.
type tail struct {
	files []*os.File
	parts []io.Reader
	r     io.Reader
}

func (t *tail) Read(p []byte) (int, error) { return t.r.Read(p) }

func (t *tail) Close() error {
	var errs []error
	for _, f := range t.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// lineStart returns the offset in f (of size end) where its last n > 0 lines
// begin, and how many lines it has from there: n, or fewer when the file
// has fewer. A file not ending in a newline has its partial last line
// counted. buf is the scratch space for reading backwards.
func lineStart(f io.ReaderAt, end int64, n int, buf []byte) (int64, int, error) {
	if end == 0 {
		return 0, 0, nil
	}
	// The newline ending the file's content is not a separator.
	limit := end
	last := buf[:1]
	if _, err := f.ReadAt(last, end-1); err != nil && err != io.EOF {
		return 0, 0, err
	}
	if last[0] == '\n' {
		limit--
	}
	seps := 0
	for pos := limit; pos > 0; {
		size := min(int64(len(buf)), pos)
		pos -= size
		b := buf[:size]
		if _, err := f.ReadAt(b, pos); err != nil && err != io.EOF {
			return 0, 0, err
		}
		for i := len(b); ; {
			i = bytes.LastIndexByte(b[:i], '\n')
			if i < 0 {
				break
			}
			if seps++; seps == n {
				return pos + int64(i) + 1, n, nil
			}
		}
	}
	return 0, seps + 1, nil
}

// PollInterval is how often Follow looks for new lines and rotations.
const PollInterval = 200 * time.Millisecond

// Follow copies what is appended to the log at path to w, from its current
// end, until ctx ends (then it returns nil) or a read or write fails. It
// survives rotation: when path names a new file (another inode) it drains the
// old one and goes on with the new one from its start; a file that shrank
// (truncated) is read again from its start. The log may be missing at first.
func Follow(ctx context.Context, path string, w io.Writer) error {
	fl := &follower{path: path, w: w, buf: make([]byte, chunk)}
	defer fl.close()
	if err := fl.reopen(true); err != nil {
		return err
	}
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		if err := fl.poll(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

type follower struct {
	path string
	w    io.Writer
	buf  []byte
	f    *os.File
	ino  uint64
	off  int64
}

func (fl *follower) close() {
	if fl.f != nil {
		fl.f.Close()
	}
}

// reopen opens path; atEnd starts at its end, else at its start. A missing
// file leaves fl without one.
func (fl *follower) reopen(atEnd bool) error {
	fl.close()
	fl.f, fl.ino, fl.off = nil, 0, 0
	f, err := os.Open(fl.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("follow log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("follow log: %w", err)
	}
	fl.f, fl.ino = f, inode(st)
	if atEnd {
		fl.off = st.Size()
	}
	return nil
}

// poll copies what is new and handles rotation and truncation.
func (fl *follower) poll() error {
	if fl.f == nil {
		if err := fl.reopen(false); err != nil || fl.f == nil {
			return err
		}
	}
	if err := fl.drain(); err != nil {
		return err
	}
	st, err := os.Stat(fl.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // between the rename and the new file: next time
	case err != nil:
		return fmt.Errorf("follow log: %w", err)
	case inode(st) != fl.ino:
		// Rotated: the writer may have written to the old file up to the
		// rename; take that, then switch.
		if err := fl.drain(); err != nil {
			return err
		}
		if err := fl.reopen(false); err != nil {
			return err
		}
		return fl.drain()
	case st.Size() < fl.off:
		fl.off = 0
		return fl.drain()
	}
	return nil
}

// drain copies fl.f from fl.off to its end.
func (fl *follower) drain() error {
	for {
		n, err := fl.f.ReadAt(fl.buf, fl.off)
		if n > 0 {
			if _, werr := fl.w.Write(fl.buf[:n]); werr != nil {
				return werr
			}
			fl.off += int64(n)
		}
		if err == io.EOF || (err == nil && n < len(fl.buf)) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("follow log: %w", err)
		}
	}
}

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

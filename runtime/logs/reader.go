package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// maxRotated bounds how many rotated files Tail looks for.
const maxRotated = 100

// chunk is how much Tail reads at a time, from the end backwards.
const chunk = 32 << 10

// Tail returns the last n lines of the log at path, reading back through
// path.1, path.2, ... as far as needed; n < 0 returns everything. A last line
// without a newline counts as a line. A missing log is an error wrapping
// fs.ErrNotExist.
func Tail(path string, n int) ([]byte, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("tail log: %w", err)
	}
	var parts [][]byte // newest first
	need := n
	for i := 0; i < maxRotated && (n < 0 || need > 0); i++ {
		b, lines, err := tailFile(numbered(path, i), need)
		if errors.Is(err, fs.ErrNotExist) {
			if i == 0 {
				continue // rotated away between Stat and open
			}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("tail log: %w", err)
		}
		parts = append(parts, b)
		if n >= 0 {
			need -= lines
		}
	}
	var out []byte
	for i := len(parts) - 1; i >= 0; i-- {
		out = append(out, parts[i]...)
	}
	return out, nil
}

// tailFile returns the last n lines of the file (all of it for n < 0) and how
// many lines that is. A file not ending in a newline has its partial last
// line counted.
func tailFile(name string, n int) ([]byte, int, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if n < 0 {
		b, err := io.ReadAll(f)
		return b, bytes.Count(b, []byte{'\n'}) + partial(b), err
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, 0, err
	}
	var buf []byte // the file's last len(buf) bytes
	for off := end; off > 0; {
		size := min(int64(chunk), off)
		off -= size
		b := make([]byte, size)
		if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
			return nil, 0, err
		}
		buf = append(b, buf...)
		// The line ending the file's content is not a separator.
		body := buf
		if len(body) > 0 && body[len(body)-1] == '\n' {
			body = body[:len(body)-1]
		}
		if c := bytes.Count(body, []byte{'\n'}); c >= n {
			// Cut after the newline that precedes the last n lines.
			i := len(body)
			for k := 0; k < n; k++ {
				i = bytes.LastIndexByte(body[:i], '\n')
			}
			return buf[i+1:], n, nil
		}
	}
	if len(buf) == 0 {
		return nil, 0, nil
	}
	return buf, bytes.Count(buf, []byte{'\n'}) + partial(buf), nil
}

func partial(b []byte) int {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return 1
	}
	return 0
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

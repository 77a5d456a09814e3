// Package logs owns containers' log files on the node: a writer that appends
// and rotates by size (path, path.1, ... path.<keep-1>), and the readers
// behind `shoal logs`: Tail across the rotated files and Follow, which keeps
// copying across rotations.
//
// # Basics
//
// Open a Writer once per log file and give it to the container as Stdout and
// Stderr (the same value for both, so os/exec copies the two streams through
// one pipe, in order). Writes append with O_APPEND and are never fsynced:
// flash storage wears with every sync, and a log line lost at a power cut is
// an acceptable price.
//
// # Caveats
//
//   - The Writer keeps the file's size in memory; two Writers (or two
//     processes) on one path both append safely, but each rotates by its own
//     count. shoal has one writer per container log at any time.
//   - A file never grows past the maximum size: a write that does not fit
//     is cut after its last newline that does, the rest goes to the next
//     file. Only a line longer than the maximum size is split.
//   - Follow polls; two rotations within one poll interval lose the middle
//     file's lines from the follower's view (they stay on disk).
package logs

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// Defaults of Open.
const (
	DefaultMaxSize = 10 << 20 // bytes per file
	DefaultKeep    = 3        // files: path, path.1, path.2
)

// Writer appends to a log file and rotates it by size. It is safe for
// concurrent use.
type Writer struct {
	path    string
	maxSize int64
	keep    int

	mu   sync.Mutex // guards following
	f    *os.File
	size int64
	err  error // set by Close: writes fail after it
}

// Open opens (creating it with mode 0600) the log file path for appending.
// maxSize <= 0 means DefaultMaxSize, keep <= 0 DefaultKeep; keep counts the
// current file, so keep 1 discards the old content at every rotation.
func Open(path string, maxSize int64, keep int) (*Writer, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if keep <= 0 {
		keep = DefaultKeep
	}
	w := &Writer{path: path, maxSize: maxSize, keep: keep}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return &logError{"open log", err}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return &logError{"open log", err}
	}
	w.f, w.size = f, st.Size()
	return nil
}

// Write appends p, rotating the file whenever p would take it past the
// maximum size: what fits up to its last newline goes into the current
// file, the rest into the next.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	written := 0
	for len(p) > 0 {
		part := p
		if room := w.maxSize - w.size; int64(len(p)) > room {
			cut := bytes.LastIndexByte(p[:max(room, 0)], '\n') + 1
			if cut == 0 && w.size == 0 {
				cut = int(room) // a line longer than a whole file
			}
			part = p[:cut]
		}
		if len(part) > 0 {
			n, err := w.f.Write(part)
			w.size += int64(n)
			written += n
			if err != nil {
				return written, err
			}
			p = p[n:]
		}
		if len(p) > 0 {
			// Full: a failed rotation keeps logging into the big file
			// rather than losing lines.
			if err := w.rotate(); err != nil {
				n, err := w.f.Write(p)
				w.size += int64(n)
				return written + n, err
			}
		}
	}
	return written, nil
}

// rotate shifts path.i to path.i+1, dropping the oldest, moves path to path.1
// and opens a fresh path. Renames keep open readers (Follow) on their file.
func (w *Writer) rotate() error {
	var errs []error
	if w.keep == 1 {
		if err := os.Remove(w.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	} else {
		for i := w.keep - 2; i >= 1; i-- {
			err := os.Rename(numbered(w.path, i), numbered(w.path, i+1))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if err := os.Rename(w.path, numbered(w.path, 1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return &logError{"rotate log " + w.path, errors.Join(errs...)}
	}
	old := w.f
	if err := w.open(); err != nil {
		return &logError{"rotate log " + w.path, err}
	}
	old.Close()
	return nil
}

// Close closes the file; later writes fail.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return nil
	}
	w.err = &logError{"write log " + w.path, fs.ErrClosed}
	return w.f.Close()
}

// numbered is the name of the i-th rotated file; 0 is path itself.
func numbered(path string, i int) string {
	if i == 0 {
		return path
	}
	return path + "." + strconv.Itoa(i)
}

// logError is "op: err". The Writer is also part of the monitor program,
// which is kept small: no fmt.
type logError struct {
	op  string
	err error
}

func (e *logError) Error() string { return e.op + ": " + e.err.Error() }
func (e *logError) Unwrap() error { return e.err }

// Remove deletes a log and every rotated file of it (path.1, path.2, ...).
func Remove(path string) error {
	var errs []error
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	old, _ := filepath.Glob(path + ".[0-9]*")
	for _, p := range old {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

package lab

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// tailLines and tailBytes bound what a failed test shows of each log: the
// end, where a crash is.
const (
	tailLines = 80
	tailBytes = 16 << 10
)

// tail is the end of the log at path, with a heading.
func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("%s: %v", path, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Sprintf("%s: %v", path, err)
	}
	off := max(size-tailBytes, 0)
	b := make([]byte, size-off)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		return fmt.Sprintf("%s: %v", path, err)
	}
	if off > 0 {
		// Drop the first, partial line.
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	heading := fmt.Sprintf("%s (%d bytes):\n", path, size)
	if len(lines) > tailLines || off > 0 {
		lines = lines[max(len(lines)-tailLines, 0):]
		heading = fmt.Sprintf("%s (%d bytes), last %d lines:\n", path, size, len(lines))
	}
	return heading + strings.Join(lines, "")
}

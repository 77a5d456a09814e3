package health

import (
	"sync"
)

// capped is an exec probe's output: it keeps the first limit bytes and
// counts the rest without holding them. A container may print without end
// (`yes`), and the output is for one line of ps; the writer must still
// accept everything, or the command would block on a full pipe and every
// such probe would end in a timeout instead of its exit code.
type capped struct {
	mu      sync.Mutex // guards following: stdout and stderr may share it
	buf     []byte
	limit   int
	dropped int64
}

func newCapped(limit int) *capped { return &capped{buf: make([]byte, 0, limit), limit: limit} }

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := min(len(p), c.limit-len(c.buf))
	c.buf = append(c.buf, p[:keep]...)
	c.dropped += int64(len(p) - keep)
	return len(p), nil
}

// result returns what was kept and how many bytes were not.
func (c *capped) result() (string, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf), c.dropped
}

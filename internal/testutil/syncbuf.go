package testutil

import (
	"bytes"
	"sync"
)

// SyncBuffer is a writer a test reads while something else writes to it
// (a log, a container's output). With Max > 0 it keeps only the first Max
// bytes and drops the rest, so that an endless writer cannot grow it.
type SyncBuffer struct {
	Max int

	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := p
	if s.Max > 0 {
		keep = p[:min(len(p), max(s.Max-s.b.Len(), 0))]
	}
	s.b.Write(keep)
	return len(p), nil
}

// String returns what was kept so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

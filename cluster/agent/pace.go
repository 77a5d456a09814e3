package agent

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"time"
)

// DefaultStarts is how many container starts a node runs at once unless
// Config.Starts says otherwise: four per CPU. A start is more waiting than
// work (the kernel's RCU grace periods for cgroup moves, the handshakes
// of init and monitor), so one per CPU left the CPUs half idle and took
// four times as long as starting all at once; a thousand at once, though,
// once left a node so busy (load 326) that Raft lost its leader and
// health checks of healthy containers timed out.
func DefaultStarts() int { return 4 * max(1, runtime.NumCPU()) }

// priority orders the starts that wait for a slot.
type priority int

const (
	// restart: an instance that ran on this node starts again (after a
	// crash, or its health check failed). It goes first: it is what
	// the node was running, and waiting behind a burst of new instances
	// would keep it down for minutes.
	restart priority = iota
	// first: an instance starts for the first time on this node.
	first
	priorities
)

// pacer bounds the container starts under way on the node and queues the
// others, restarts first, each priority in order of arrival. It also
// tells whether the node is busy with starts, for health checks.
type pacer struct {
	slots int

	mu       sync.Mutex // guards following
	running  int
	waiting  [priorities][]chan struct{}
	busyTill time.Time // the last moment a start waited for a slot
}

func newPacer(slots int) *pacer { return &pacer{slots: max(1, slots)} }

// acquire waits for a start slot and returns the function that gives it
// back, or ctx's error if ctx ends first (the instance was stopped while
// its start waited).
func (p *pacer) acquire(ctx context.Context, pri priority) (release func(), err error) {
	p.mu.Lock()
	if p.running < p.slots && p.queued() == 0 {
		p.running++
		p.mu.Unlock()
		return p.release, nil
	}
	ready := make(chan struct{})
	p.waiting[pri] = append(p.waiting[pri], ready)
	p.busyTill = time.Now()
	p.mu.Unlock()
	select {
	case <-ready:
		return p.release, nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.waiting[pri], ready); i >= 0 {
		p.waiting[pri] = slices.Delete(p.waiting[pri], i, i+1)
		return nil, ctx.Err()
	}
	// Handed a slot as ctx ended: pass it on.
	p.releaseLocked()
	return nil, ctx.Err()
}

// release gives a slot back: to the first waiter of the highest priority,
// or to the pool.
func (p *pacer) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.releaseLocked()
}

func (p *pacer) releaseLocked() {
	for pri := range p.waiting {
		if len(p.waiting[pri]) > 0 {
			next := p.waiting[pri][0]
			p.waiting[pri] = p.waiting[pri][1:]
			close(next) // the slot passes on: running stays
			p.busyTill = time.Now()
			return
		}
	}
	p.running--
}

func (p *pacer) queued() int {
	n := 0
	for _, w := range p.waiting {
		n += len(w)
	}
	return n
}

// busySince reports whether a start has waited for a slot at any time
// since t, or waits now: the node has been starting containers as fast as
// it may.
func (p *pacer) busySince(t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queued() > 0 || !p.busyTill.Before(t)
}

// spacer spaces out events: each wait returns at least every after the
// one before. The stops of containers go through it: a thousand stopped
// at once made as many processes exit at once, and the node stalled for
// over a second (the leader it was stepped down).
type spacer struct {
	every time.Duration

	mu   sync.Mutex // guards next
	next time.Time
}

// wait returns at the next free moment.
func (s *spacer) wait() {
	s.mu.Lock()
	now := time.Now()
	at := now
	if s.next.After(now) {
		at = s.next
	}
	s.next = at.Add(s.every)
	s.mu.Unlock()
	if d := at.Sub(now); d > 0 {
		time.Sleep(d)
	}
}

package linux

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"sync"
	"time"

	"github.com/shoal-edge/shoal/runtime/cgroup"
)

// A spare is a container init started ahead of time for the next one-off
// container: forked in new namespaces (its own network namespace
// included), moved into a cgroup named as that container will be, its Go
// runtime up, waiting for a config. A one-off Start on a spare skips the
// fork, the init's start and the cgroup move, which on cgroup v1 waits for
// a kernel RCU grace period: that is most of a start's time.
//
// A spare is made after each one-off Start and retired when no one-off
// came for Config.SpareIdle, so a node that runs none holds none. Only a one-off
// with its own network namespace, no stdin and no resource limits fits
// one (shoal run); any other starts as usual.
type spare struct {
	id             string
	cg             *cgroup.Cgroup
	l              *launch
	stdout, stderr *lateWriter
}

// spares holds a Runtime's spare, at most one.
type spares struct {
	rt   *Runtime
	idle time.Duration // Config.SpareIdle

	making sync.WaitGroup // the spare on its way, if any

	mu        sync.Mutex
	ready     *spare
	busy      bool // one is on its way
	closed    bool
	overlayOK bool // a one-off got an overlay: spares may mount theirs
	retire    *time.Timer
}

// overlayWorks records that overlayfs works for one-offs here: a spare
// mounts its container's overlay itself, with no copy to fall back on.
func (p *spares) overlayWorks() {
	p.mu.Lock()
	p.overlayOK = true
	p.mu.Unlock()
}

// fits reports whether a one-off s can start on a spare.
func fits(s Spec) bool {
	return !s.HostNetwork && s.Stdin == nil && s.Resources == (cgroup.Resources{})
}

// take hands out the spare if s fits it, nil otherwise.
func (p *spares) take(s Spec) *spare {
	if !fits(s) {
		return nil
	}
	return p.takeReady()
}

func (p *spares) takeReady() *spare {
	p.mu.Lock()
	defer p.mu.Unlock()
	sp := p.ready
	p.ready = nil
	return sp
}

// replenish starts making a spare unless one is ready or on its way; it
// pushes the retirement of the spare back by idle.
func (p *spares) replenish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || !p.overlayOK || p.idle <= 0 {
		return
	}
	if p.retire == nil {
		p.retire = time.AfterFunc(p.idle, p.retireIdle)
	} else {
		p.retire.Reset(p.idle)
	}
	if p.ready != nil || p.busy {
		return
	}
	p.busy = true
	p.making.Add(1)
	go p.make()
}

func (p *spares) make() {
	defer p.making.Done()
	sp, err := p.rt.newSpare()
	if err != nil {
		p.rt.log.Warn("start a spare container init", "err", err)
	}
	p.mu.Lock()
	p.busy = false
	if sp != nil && !p.closed {
		p.ready, sp = sp, nil
	}
	p.mu.Unlock()
	if sp != nil {
		p.rt.discard(sp)
	}
}

// retireIdle removes the ready spare: no one-off came for idle.
func (p *spares) retireIdle() {
	if sp := p.takeReady(); sp != nil {
		p.rt.discard(sp)
	}
}

// close removes the spare, waiting for one on its way, and makes no more.
func (p *spares) close() {
	p.mu.Lock()
	p.closed = true
	if p.retire != nil {
		p.retire.Stop()
	}
	p.mu.Unlock()
	p.making.Wait()
	if sp := p.takeReady(); sp != nil {
		p.rt.discard(sp)
	}
}

// newSpare starts an init for a one-off container and starts moving it into
// the cgroup of the name it will have. It is ready once forked: a Start that
// takes it sooner waits for the rest of the move, which still beats making
// its own.
func (r *Runtime) newSpare() (*spare, error) {
	id := r.oneOffID()
	cg, err := cgroup.New(r.cfg.CgroupParent, id, cgroup.Resources{})
	if err != nil {
		return nil, err
	}
	sp := &spare{id: id, cg: cg, stdout: &lateWriter{}, stderr: &lateWriter{}}
	sp.l, err = launchInit(Spec{ID: id, Stdout: sp.stdout, Stderr: sp.stderr}, cg)
	if err != nil {
		_ = cg.Delete()
		return nil, err
	}
	return sp, nil
}

// discard ends a spare that will not become a container.
func (r *Runtime) discard(sp *spare) {
	sp.l.kill()
	if err := sp.cg.Delete(); err != nil {
		// Cleanup at the next daemon start removes what is left.
		r.log.Warn("remove a spare container init", "container", sp.id, "err", err)
	}
}

// oneOffID names a one-off container: OneOffPrefix and 8 hex digits.
func (r *Runtime) oneOffID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return r.cfg.OneOffPrefix + hex.EncodeToString(b[:])
}

// lateWriter is a spare's stdout or stderr. exec.Cmd copies the init's
// output into it from the fork on; it passes that on to the writer of the
// container the spare becomes, or nowhere before (the init itself writes
// nothing).
type lateWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lateWriter) set(w io.Writer) {
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
}

func (l *lateWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	w := l.w
	l.mu.Unlock()
	if w == nil {
		return len(p), nil
	}
	return w.Write(p)
}

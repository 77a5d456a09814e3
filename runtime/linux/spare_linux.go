package linux

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"sync"
	"sync/atomic"

	ahead "github.com/shoal-edge/shoal/internal/spare"
	"github.com/shoal-edge/shoal/runtime/cgroup"
)

// A spare is a container init started ahead of time for the next one-off
// container: forked in new namespaces (its own network namespace
// included), moved into a cgroup named as that container will be, its Go
// runtime up, waiting for a config. A one-off Start on a spare skips the
// fork and the init's start, and what is done of the cgroup move, which on
// cgroup v1 waits for a kernel RCU grace period: together most of a
// start's time. A spare is handed out as soon as it is forked.
//
// A spare is made after each one-off Start and retired when no one-off
// came for Config.SpareIdle, so a node that runs none holds none. Only a
// one-off with its own network namespace, no stdin, no resource limits and
// pipes for its output fits one (shoal run); any other starts as usual.
type spare struct {
	id             string
	cg             *cgroup.Cgroup
	l              *launch
	stdout, stderr *lateWriter
}

// spares holds a Runtime's spare init, at most one.
type spares struct {
	one       ahead.One[*spare]
	overlayOK atomic.Bool // a one-off got an overlay: spares may mount theirs
}

func (p *spares) init(r *Runtime) {
	p.one = ahead.One[*spare]{
		Make:    r.newSpare,
		Discard: r.discard,
		Idle:    r.cfg.SpareIdle,
		OnError: func(err error) { r.log.Warn("start a spare container init", "err", err) },
	}
}

// fits reports whether a one-off s can start on a spare. A spare's stdout
// and stderr are pipes made at its fork: a file (a terminal) would reach
// the container as a pipe, and one writer for both would be written by
// two goroutines at once, where exec.Cmd gives it one.
func fits(s Spec) bool {
	_, outFile := s.Stdout.(*os.File)
	_, errFile := s.Stderr.(*os.File)
	return !s.HostNetwork && s.Stdin == nil && s.Resources == (cgroup.Resources{}) &&
		!outFile && !errFile && !sameWriter(s.Stdout, s.Stderr)
}

// sameWriter is a == b for writers, false where their type cannot be
// compared.
func sameWriter(a, b io.Writer) (same bool) {
	if a == nil || b == nil {
		return false
	}
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// take hands out the spare if s fits it, nil otherwise. A spare killed from
// outside while it waited is discarded instead.
func (p *spares) take(s Spec) *spare {
	if !fits(s) {
		return nil
	}
	sp, ok := p.one.Take()
	if ok && sp.l.exited() {
		p.one.Discard(sp)
		return nil
	}
	return sp
}

// replenish starts making a spare where spares are on and can work.
func (p *spares) replenish() {
	// A spare mounts its container's overlay itself, with no copy to
	// fall back on: only where overlayfs worked for a one-off.
	if p.overlayOK.Load() && p.one.Idle > 0 {
		p.one.Replenish()
	}
}

func (p *spares) close() { p.one.Close() }

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

package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/shoal-edge/shoal/runtime/exit"
)

// Process is one started container, as the loop needs it; *linux.Container
// and *monitor.Handle satisfy it.
//
// Optional capabilities, found by type assertion: StartedAt() time.Time (an
// adopted process's real start, see Config.Adopt) and io.Closer (release
// the process without stopping it, see Config.Detach).
type Process interface {
	Pid() int
	// Wait blocks until the process exited; it may be called again.
	Wait() exit.Status
	// Stop asks it to exit and kills it after grace; it returns once exited.
	Stop(grace time.Duration) error
	// Delete removes whatever the process left (cgroup, mounts, state).
	Delete() error
}

// Clock is the time source of the loop, replaceable in tests.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// State is what an Event reports of the supervised container.
type State string

// Event states.
const (
	Starting State = "starting" // about to call Start
	Running  State = "running"  // started; Pid and StartedAt are set
	Exited   State = "exited"   // the process ended; ExitCode and OOMKilled are set
	Failed   State = "failed"   // Start failed; Err says why
)

// Event reports a change of the supervised container.
type Event struct {
	State     State
	Pid       int
	ExitCode  int
	OOMKilled bool
	// Restarts counts every restart since Run began.
	Restarts  int
	StartedAt time.Time
	// Err is the start error of a "failed" event, or what went wrong while
	// waiting for or removing an exited process.
	Err error
}

// Config configures Run.
type Config struct {
	// Start creates and starts a fresh container each time it is called.
	Start func(ctx context.Context) (Process, error)
	// Adopt, when set, is a process that already runs, found by a new
	// daemon: the first run supervises it instead of calling Start, with
	// a "running" event and no "starting" one. Its StartedAt() time.Time
	// method, when it has one, dates the run; else Run's start does.
	Adopt Process
	// OnEnd, when set, is called from the loop when the restart policy
	// ends supervision (not when ctx ends or Detach closes), after the
	// last event and before Run returns.
	OnEnd func()
	// OverlapDelete lets the next start begin while the exited container
	// is still being deleted (unmount, cgroup removal): it shortens crash
	// to running again. Only for Start funcs that give every container a
	// new id. Run still returns only after every delete has finished.
	OverlapDelete bool
	// BeforeStop, when set, is called before the container is told to
	// stop (ctx ended), and may hold the stop back: the node spaces out
	// the stops of many containers at once.
	BeforeStop func()
	// Detach, when closed, makes Run return at once leaving the current
	// process running, without events: the daemon shuts down and the
	// container outlives it. The process is released with its Close
	// method, which must make a pending Wait return. A process without
	// one (io.Closer; *linux.Container dies with the daemon anyway) is
	// supervised on until ctx ends. nil never detaches.
	Detach <-chan struct{}
	Policy Policy
	// Grace is the stop grace period when ctx is cancelled (10s when 0).
	Grace time.Duration
	// Clock is the real clock when nil.
	Clock Clock
	// OnEvent, when set, is called from Run's goroutine on every change;
	// it must return quickly.
	OnEvent func(Event)
	Logger  *slog.Logger
}

// Run keeps a container running by cfg.Policy. It returns when ctx is
// cancelled, after stopping (with cfg.Grace) and deleting the current
// container, or when the policy says not to restart, after the final
// "exited" or "failed" event; every container it started is deleted by then.
// When cfg.Detach closes, it returns leaving the current container running.
// It returns an error only for an invalid Config.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Start == nil {
		return errors.New("supervise: Config.Start is nil")
	}
	if err := cfg.Policy.Validate(); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.OnEvent == nil {
		cfg.OnEvent = func(Event) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := loop{cfg: cfg}
	l.run(ctx)
	l.deletes.Wait()
	return nil
}

// loop is Run's state, owned by Run's goroutine.
type loop struct {
	cfg      Config
	restarts int // every restart since Run began
	failures int // restarts since the last stable run, for the backoff
	deletes  sync.WaitGroup
}

func (l *loop) run(ctx context.Context) {
	log := l.cfg.Logger
	adopt := l.cfg.Adopt
	for {
		if ctx.Err() != nil || l.detached() {
			return
		}
		var out Outcome
		var ran time.Duration
		var end ending
		if adopt != nil {
			out, ran, end = l.supervise(ctx, adopt)
			adopt = nil
		} else {
			l.cfg.OnEvent(Event{State: Starting, Restarts: l.restarts})
			out, ran, end = l.once(ctx)
		}
		if end != endExited {
			return
		}
		restart, delay, next := Decide(l.cfg.Policy, out, l.failures, ran)
		if !restart {
			log.Info("not restarting", "policy", l.cfg.Policy.Restart, "code", out.Code, "restarts", l.restarts)
			if l.cfg.OnEnd != nil {
				l.cfg.OnEnd()
			}
			return
		}
		l.failures = next
		log.Info("restarting", "delay", delay, "code", out.Code, "restarts", l.restarts)
		// The first restart is immediate: no timer, no scheduling delay.
		if delay > 0 {
			select {
			case <-ctx.Done():
				return
			case <-l.cfg.Detach:
				return
			case <-l.cfg.Clock.After(delay):
			}
		}
		l.restarts++
	}
}

func (l *loop) detached() bool {
	select {
	case <-l.cfg.Detach:
		return true
	default:
		return false
	}
}

// killWait bounds the wait for a stopped container's exit after its grace.
const killWait = 30 * time.Second

// ending is how a run ended.
type ending int

const (
	endExited    ending = iota // by itself (or failed to start)
	endCancelled               // ctx ended: stopped and deleted
	endDetached                // Detach closed: left running
)

// once starts the container and supervises it. It reports how the run ended
// and how long it lasted.
func (l *loop) once(ctx context.Context) (Outcome, time.Duration, ending) {
	p, err := l.cfg.Start(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return Outcome{}, 0, endCancelled
		}
		l.cfg.Logger.Warn("start failed", "err", err, "restarts", l.restarts)
		l.cfg.OnEvent(Event{State: Failed, Restarts: l.restarts, Err: err})
		return Outcome{Code: -1, StartErr: err}, 0, endExited
	}
	return l.supervise(ctx, p)
}

// supervise reports p running and waits until it exits, ctx ends (then it
// stops it) or Detach closes (then it releases it).
func (l *loop) supervise(ctx context.Context, p Process) (Outcome, time.Duration, ending) {
	startedAt := l.cfg.Clock.Now()
	if s, ok := p.(interface{ StartedAt() time.Time }); ok && !s.StartedAt().IsZero() {
		startedAt = s.StartedAt()
	}
	l.cfg.OnEvent(Event{State: Running, Pid: p.Pid(), Restarts: l.restarts, StartedAt: startedAt})

	// The waiter ends when the process does (or is released); every path
	// below waits for it.
	exited := make(chan exit.Status, 1)
	go func() { exited <- p.Wait() }()
	detach := l.cfg.Detach
	closer, canDetach := p.(io.Closer)
	if !canDetach {
		detach = nil
	}
	var ex exit.Status
	end := endExited
	select {
	case ex = <-exited:
	case <-detach:
		if err := closer.Close(); err != nil {
			l.cfg.Logger.Warn("release container", "pid", p.Pid(), "err", err)
		}
		<-exited
		l.cfg.Logger.Info("left running", "pid", p.Pid())
		return Outcome{}, 0, endDetached
	case <-ctx.Done():
		end = endCancelled
		if l.cfg.BeforeStop != nil {
			l.cfg.BeforeStop()
		}
		if err := p.Stop(l.cfg.Grace); err != nil {
			l.cfg.Logger.Error("stop container", "pid", p.Pid(), "err", err)
			// Delete kills what Stop could not.
			_ = p.Delete()
		}
		// A process stuck in the kernel (uninterruptible sleep) may not
		// die even from SIGKILL: give up rather than hang the caller.
		select {
		case ex = <-exited:
		case <-l.cfg.Clock.After(killWait):
			l.cfg.Logger.Error("container did not exit after SIGKILL; giving up on it", "pid", p.Pid(), "waited", killWait)
			ex = exit.Status{Code: -1, Err: fmt.Errorf("container pid %d did not exit within %v of SIGKILL", p.Pid(), killWait)}
		}
	}
	ran := l.cfg.Clock.Now().Sub(startedAt)
	errs := []error{ex.Err}
	if end == endExited && l.cfg.OverlapDelete {
		l.deletes.Add(1)
		go func() {
			defer l.deletes.Done()
			if err := p.Delete(); err != nil {
				l.cfg.Logger.Error("delete container", "pid", p.Pid(), "err", err)
			}
		}()
	} else if err := p.Delete(); err != nil {
		l.cfg.Logger.Error("delete container", "pid", p.Pid(), "err", err)
		errs = append(errs, err)
	}
	l.cfg.OnEvent(Event{
		State: Exited, Pid: p.Pid(), ExitCode: ex.Code, OOMKilled: ex.OOMKilled,
		Restarts: l.restarts, StartedAt: startedAt, Err: errors.Join(errs...),
	})
	return Outcome{Code: ex.Code, OOMKilled: ex.OOMKilled}, ran, end
}

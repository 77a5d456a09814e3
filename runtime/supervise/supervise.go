package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/shoal-edge/shoal/runtime/linux"
)

// Process is one started container, as the loop needs it; *linux.Container
// satisfies it.
type Process interface {
	Pid() int
	// Wait blocks until the process exited; it may be called again.
	Wait() linux.Exit
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

// Event states.
const (
	Starting = "starting" // about to call Start
	Running  = "running"  // started; Pid and StartedAt are set
	Exited   = "exited"   // the process ended; ExitCode and OOMKilled are set
	Failed   = "failed"   // Start failed; Err says why
)

// Event reports a change of the supervised container.
type Event struct {
	State     string
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
	Start  func(ctx context.Context) (Process, error)
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
// "exited" or "failed" event. Every container it started is deleted by then.
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
	return nil
}

// loop is Run's state, owned by Run's goroutine.
type loop struct {
	cfg      Config
	restarts int // every restart since Run began
	failures int // restarts since the last stable run, for the backoff
}

func (l *loop) run(ctx context.Context) {
	log := l.cfg.Logger
	for {
		if ctx.Err() != nil {
			return
		}
		l.cfg.OnEvent(Event{State: Starting, Restarts: l.restarts})
		out, ran, cancelled := l.once(ctx)
		if cancelled {
			return
		}
		restart, delay, next := Decide(l.cfg.Policy, out, l.failures, ran)
		if !restart {
			log.Info("not restarting", "policy", l.cfg.Policy.Restart, "code", out.Code, "restarts", l.restarts)
			return
		}
		l.failures = next
		log.Info("restarting", "delay", delay, "code", out.Code, "restarts", l.restarts)
		select {
		case <-ctx.Done():
			return
		case <-l.cfg.Clock.After(delay):
		}
		l.restarts++
	}
}

// once starts the container and supervises it until it exits or ctx is
// cancelled (then it stops it). It reports how the run ended, how long it
// lasted and whether ctx ended it.
func (l *loop) once(ctx context.Context) (Outcome, time.Duration, bool) {
	p, err := l.cfg.Start(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return Outcome{}, 0, true
		}
		l.cfg.Logger.Warn("start failed", "err", err, "restarts", l.restarts)
		l.cfg.OnEvent(Event{State: Failed, Restarts: l.restarts, Err: err})
		return Outcome{Code: -1, StartErr: err}, 0, false
	}
	startedAt := l.cfg.Clock.Now()
	l.cfg.OnEvent(Event{State: Running, Pid: p.Pid(), Restarts: l.restarts, StartedAt: startedAt})

	// The waiter ends when the process does; every path below waits for it.
	exited := make(chan linux.Exit, 1)
	go func() { exited <- p.Wait() }()
	var ex linux.Exit
	cancelled := false
	select {
	case ex = <-exited:
	case <-ctx.Done():
		cancelled = true
		if err := p.Stop(l.cfg.Grace); err != nil {
			l.cfg.Logger.Error("stop container", "pid", p.Pid(), "err", err)
			// Delete kills what Stop could not.
			_ = p.Delete()
		}
		ex = <-exited
	}
	ran := l.cfg.Clock.Now().Sub(startedAt)
	errs := []error{ex.Err}
	if err := p.Delete(); err != nil {
		l.cfg.Logger.Error("delete container", "pid", p.Pid(), "err", err)
		errs = append(errs, err)
	}
	l.cfg.OnEvent(Event{
		State: Exited, Pid: p.Pid(), ExitCode: ex.Code, OOMKilled: ex.OOMKilled,
		Restarts: l.restarts, StartedAt: startedAt, Err: errors.Join(errs...),
	})
	return Outcome{Code: ex.Code, OOMKilled: ex.OOMKilled}, ran, cancelled
}

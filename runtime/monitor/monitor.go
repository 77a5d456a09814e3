// Package monitor owns the process that keeps one container alive
// independently of the daemon: a small monitor per container that is the
// container's parent, copies its output into a rotating log, records its
// exit and answers the daemon over a unix socket. Stopping, upgrading or
// crashing the daemon leaves monitors and containers running; the next
// daemon adopts them (Monitors.Adopt) without a restart and learns the exits
// of those that ended meanwhile.
//
// # The monitor program
//
// A monitor runs once per container, so its memory is the per-container
// overhead. It is therefore not this binary (whose package initialisation
// alone leaves ~2 MiB of heap and data in every process) but a small
// program of its own, ./prog, that links little beyond os and os/signal:
// `go generate` builds it into progbin/GOARCH and the binary embeds it
// (program_GOARCH.go). The daemon puts it into a sealed memfd once and
// starts monitors from there.
//
// # Basics
//
// Monitors.Start makes the state dir, writes spec.json, takes the lock,
// binds the socket and has the runtime start the container with a
// linux.Spec.Forker: everything about the container (cgroup, overlay,
// config, the checks before its program runs) is done by the daemon, but
// the init is forked by the monitor, which the daemon starts with a control
// socket (package ctl). The monitor gets the lock and the listening socket
// with the fork request and keeps them for life. The container carries the
// parent-death SIGKILL: it dies with its monitor, never with the daemon.
//
// # State directory (DATA/monitors/<id>)
//
//	spec.json     the container spec and runtime settings, by the daemon
//	state.json    monitor pid, container pid, start time, by the daemon
//	lock          flock held by the monitor for its whole life
//	sock          the monitor's unix socket
//	exit.json     how the container ended, by the monitor
//	monitor.log   the monitor's own log lines (not the container's output)
//
// Handle.Delete removes the container (the runtime's Cleanup of its id)
// and the directory once the monitor has gone; OOM kills are read from the
// container's cgroup before that, when the exit arrives.
//
// # Protocol
//
// One request per connection, one JSON object per line each way:
// {"op":"status"}, {"op":"signal","signal":N}, {"op":"stop","grace":ns}
// (answered once PID 1 has exited) and {"op":"wait"}, answered with the
// exit once the container has exited. A connection that closes without an
// answer means the monitor is gone; exit.json then says what it had learnt.
// A monitor never depends on a client: it exits after its container whether
// or not anyone collected the exit.
//
// # Spares
//
// With Config.Spare, Monitors keeps one monitor started ahead of time: its
// argv[2] is "-", the monitors' root and room for a path, and it waits on
// its control socket. Start hands it the container instead of starting a
// process; the spare writes its state dir over its argv[2], so ps shows it
// as any monitor. A spare exits when its socket closes: Close, or the
// daemon's end.
//
// # Caveats
//
//   - The monitor stays in the daemon's cgroup (never the container's: it
//     must not count against the container's limits). A service manager
//     that kills the daemon's whole cgroup on stop kills the monitors, and
//     with them the containers: run shoal's unit with KillMode=process, as
//     containerd's is. A monitor that receives SIGTERM stops its container
//     (10s grace) and records the exit.
//   - Adopt must run before the daemon's first Start and before
//     linux.Runtime.Cleanup, to which it passes Owns.
//   - A container whose monitor ended while no daemon ran keeps its
//     cgroup and overlay until the next daemon adopts it.
package monitor

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-edge/shoal/runtime/exit"
	"github.com/shoal-edge/shoal/runtime/linux"
	"github.com/shoal-edge/shoal/runtime/monitor/ctl"
)

// Spec describes one monitored container: the container as the Linux
// runtime takes it, where its output goes, and labels the monitor keeps
// without reading them. It is spec.json's "spec", flat: the fields of
// linux.Spec and these side by side, as a daemon before the embedding wrote
// them, so that containers it started are adopted.
type Spec struct {
	// The container; its ID is unique on the node and names the
	// monitor's and the container's state directories and the
	// container's cgroup. Stdin, Stdout, Stderr and Forker are the
	// monitor's to set: they must be left empty.
	linux.Spec
	// LogPath receives stdout and stderr, rotated by size; empty discards
	// the output.
	LogPath string `json:"log_path,omitempty"`
	// LogMaxSize and LogKeep are logs.Open's (0: its defaults).
	LogMaxSize int64 `json:"log_max_size,omitempty"`
	LogKeep    int   `json:"log_keep,omitempty"`
	// Labels are opaque to the monitor; the caller finds them again on
	// adoption (the agent stores app, index and version there).
	Labels map[string]string `json:"labels,omitempty"`
}

// Validate checks what must hold before anything is created; the runtime
// checks the rest when the monitor starts the container.
func (s Spec) Validate() error {
	if !linux.ValidID(s.ID) {
		return fmt.Errorf("container id %q: want 1-128 letters, digits, '_', '.', '-' starting with a letter or digit", s.ID)
	}
	if len(s.Args) == 0 {
		return fmt.Errorf("container %s: no command (Args is empty)", s.ID)
	}
	if s.Stdin != nil || s.Stdout != nil || s.Stderr != nil || s.Forker != nil {
		return fmt.Errorf("container %s: Stdin, Stdout, Stderr and Forker are the monitor's: leave them empty (the output goes to LogPath)", s.ID)
	}
	return nil
}

// Names in the state directory.
const (
	specFile   = "spec.json"
	stateFile  = "state.json"
	exitFile   = ctl.ExitFile
	sockFile   = ctl.SockFile
	monLogFile = ctl.LogFile
	lockFile   = "lock"
)

// monitorArg is argv[1] of a monitor process; argv[2] is its state dir, or,
// for a spare that waits to be given one, spareArg, the monitors' root and
// spaces: room for the state dir it then writes over them, so that ps shows
// which container a monitor serves however it started, and whose spare a
// waiting one is.
const (
	monitorArg = "__shoal_monitor"
	spareArg   = "-"
)

// spareArgv2 is the argv[2] of a spare of the monitors under root.
func spareArgv2(root string) string {
	s := spareArg + " " + root
	return s + strings.Repeat(" ", max(512-len(s), 1))
}

// specDoc is spec.json: the spec and the runtime the monitor creates.
type specDoc struct {
	Spec            Spec   `json:"spec"`
	RuntimeStateDir string `json:"runtime_state_dir"`
	CgroupParent    string `json:"cgroup_parent,omitempty"`
}

// stateDoc is state.json.
type stateDoc struct {
	MonitorPid int       `json:"monitor_pid"`
	Pid        int       `json:"pid"`
	StartedAt  time.Time `json:"started_at"`
}

// exitDoc is exit.json and the answer to "wait": exit.Status on the wire.
type exitDoc struct {
	Code      int       `json:"code"`
	Signal    int       `json:"signal,omitempty"`
	OOMKilled bool      `json:"oom_killed,omitempty"`
	Err       string    `json:"err,omitempty"`
	ExitedAt  time.Time `json:"exited_at"`
}

func (d exitDoc) exit() exit.Status {
	ex := exit.Status{Code: d.Code, Signal: syscall.Signal(d.Signal), OOMKilled: d.OOMKilled}
	if d.Err != "" {
		ex.Err = &RemoteError{Msg: d.Err}
	}
	return ex
}

// request is one client request.
type request struct {
	Op     string        `json:"op"` // status, wait, stop, signal
	Grace  time.Duration `json:"grace,omitempty"`
	Signal int           `json:"signal,omitempty"`
}

// response answers a request; Err is set on failure.
type response struct {
	Err    string    `json:"err,omitempty"`
	State  *stateDoc `json:"state,omitempty"`
	Exited *exitDoc  `json:"exited,omitempty"` // status: the exit, once known
	Exit   *exitDoc  `json:"exit,omitempty"`   // wait
}

// RemoteError is an error the monitor reported, as text.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

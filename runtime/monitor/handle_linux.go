package monitor

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-edge/shoal/runtime/exit"
	"github.com/shoal-edge/shoal/runtime/linux"
)

// ErrReleased is the Err of the exit Wait returns after Close: the handle let
// go of a container that still runs.
var ErrReleased = errors.New("monitor handle released; the container runs on")

// Handle is the daemon's view of one monitored container. Its methods are
// safe for concurrent use; it satisfies supervise.Process, with StartedAt
// and Close as the optional capabilities.
type Handle struct {
	m          *Monitors
	spec       Spec
	id, dir    string
	pid        int
	monitorPid int
	startedAt  time.Time

	done chan struct{} // closed by watch (or at once for a dead monitor)
	exit exit.Status   // written before done is closed

	// reaped is closed once our child monitor is reaped; nil for an
	// adopted one, which is not our child.
	reaped <-chan struct{}
	// ctr is the runtime's view of a container we started, which holds
	// its mount namespace until Delete; nil for an adopted one.
	ctr *linux.Container

	mu       sync.Mutex // guards following
	waitConn net.Conn
	released bool

	deleteMu sync.Mutex // serializes Delete
	deleted  bool
}

// connect opens the "wait" stream to the monitor in s's dir and starts the
// goroutine that turns its answer into the exit.
func (m *Monitors) connect(s Spec, st stateDoc, reaped <-chan struct{}) (*Handle, error) {
	h := m.newHandle(s, st, reaped)
	conn, err := dial(h.dir)
	if err != nil {
		return nil, err
	}
	if err := writeRequest(conn, request{Op: "wait"}); err != nil {
		conn.Close()
		return nil, err
	}
	h.waitConn = conn
	go h.watch(conn)
	return h, nil
}

// exitedHandle is the handle of a container whose monitor is gone.
func (m *Monitors) exitedHandle(s Spec, st stateDoc, ex exit.Status) *Handle {
	h := m.newHandle(s, st, nil)
	h.exit = ex
	close(h.done)
	return h
}

func (m *Monitors) newHandle(s Spec, st stateDoc, reaped <-chan struct{}) *Handle {
	return &Handle{
		m: m, spec: s, id: s.ID, dir: m.dir(s.ID),
		pid: st.Pid, monitorPid: st.MonitorPid, startedAt: st.StartedAt,
		done: make(chan struct{}), reaped: reaped,
	}
}

// watch reads the exit from the wait stream; it is the one goroutine that
// sets h.exit and ends when the monitor answers, dies or Close hangs up.
func (h *Handle) watch(conn net.Conn) {
	defer close(h.done)
	line, err := bufio.NewReaderSize(conn, 512).ReadBytes('\n')
	conn.Close()
	var resp response
	if err == nil {
		err = json.Unmarshal(line, &resp)
	}
	if err == nil && resp.Exit != nil {
		h.exit = h.m.withOOM(h.id, resp.Exit.exit())
		return
	}
	h.mu.Lock()
	released := h.released
	h.mu.Unlock()
	if released {
		h.exit = exit.Status{Code: -1, Err: ErrReleased}
		return
	}
	// The monitor went away without answering: it may have recorded the
	// exit before it died.
	var ed exitDoc
	if rerr := readJSON(filepath.Join(h.dir, exitFile), &ed); rerr == nil {
		h.exit = h.m.withOOM(h.id, ed.exit())
		return
	}
	h.exit = exit.Status{Code: -1, Err: fmt.Errorf("container %s: its monitor (pid %d) died without recording the exit: %v", h.id, h.monitorPid, err)}
}

// ID is the container's id.
func (h *Handle) ID() string { return h.id }

// Pid is the host pid of the container's PID 1 (0 if never known).
func (h *Handle) Pid() int { return h.pid }

// MonitorPid is the monitor's pid.
func (h *Handle) MonitorPid() int { return h.monitorPid }

// StartedAt is when the container started, also for an adopted one.
func (h *Handle) StartedAt() time.Time { return h.startedAt }

// Spec is the spec the container was started with, labels included.
func (h *Handle) Spec() Spec { return h.spec }

// Wait blocks until the container has exited (or its monitor is gone, or
// Close released the handle) and returns how it ended; Delete removes it.
// It may be called any number of times.
func (h *Handle) Wait() exit.Status {
	<-h.done
	return h.exit
}

// Done is closed when Wait would return.
func (h *Handle) Done() <-chan struct{} { return h.done }

// Close lets go of the container without stopping it (the daemon shuts
// down; the next one adopts it): the wait stream is closed and Wait returns
// an exit with ErrReleased unless the container ended first. The monitor
// does not mind.
func (h *Handle) Close() error {
	h.mu.Lock()
	h.released = true
	conn := h.waitConn
	h.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	<-h.done
	return nil
}

// Signal sends sig to the container's PID 1.
func (h *Handle) Signal(sig syscall.Signal) error {
	resp, err := request1(h.dir, request{Op: "signal", Signal: int(sig)}, 5*time.Second)
	if err != nil {
		return fmt.Errorf("signal container %s: %w", h.id, err)
	}
	if resp.Err != "" {
		return fmt.Errorf("signal container %s: %w", h.id, &RemoteError{Msg: resp.Err})
	}
	return nil
}

// stopSlack is how long Stop waits for the monitor beyond the grace: the
// runtime's SIGKILL escalation and its wait for the kill.
const stopSlack = 45 * time.Second

// Stop asks the monitor to send SIGTERM and, after grace, SIGKILL the whole
// container; it returns once PID 1 has exited.
func (h *Handle) Stop(grace time.Duration) error {
	select {
	case <-h.done:
		return nil
	default:
	}
	resp, err := request1(h.dir, request{Op: "stop", Grace: grace}, grace+stopSlack)
	if err != nil {
		// A monitor whose container just exited no longer answers, but
		// its wait stream ends at once.
		select {
		case <-h.done:
			return nil
		case <-time.After(2 * time.Second):
		}
		return fmt.Errorf("stop container %s: %w", h.id, err)
	}
	if resp.Err != "" {
		return fmt.Errorf("stop container %s: %w", h.id, &RemoteError{Msg: resp.Err})
	}
	return nil
}

// reapTimeout bounds how long Delete waits for its child monitor to exit
// after it reported the exit.
const reapTimeout = 10 * time.Second

// Delete kills the container if it still runs, makes sure nothing of it is
// left (mounts, cgroup, state) and removes the monitor's state directory.
// Deleting twice is not an error.
func (h *Handle) Delete() error {
	h.deleteMu.Lock()
	defer h.deleteMu.Unlock()
	if h.deleted {
		return nil
	}
	select {
	case <-h.done:
	default:
		wait := stopSlack
		err := h.Stop(0)
		if err != nil {
			// A monitor that just died cannot answer, but its wait
			// stream ends at once.
			wait = 2 * time.Second
		}
		select {
		case <-h.done:
		case <-time.After(wait):
			if err == nil {
				err = fmt.Errorf("its monitor did not report the exit within %v", wait)
			}
			return fmt.Errorf("delete container %s: %w", h.id, err)
		}
	}
	if errors.Is(h.exit.Err, ErrReleased) {
		return fmt.Errorf("delete container %s: the handle was released", h.id)
	}
	if h.reaped != nil {
		select {
		case <-h.reaped:
		case <-time.After(reapTimeout):
			h.m.log.Warn("monitor still running after its container's exit", "container", h.id, "monitor_pid", h.monitorPid)
		}
	} else {
		// Adopted: not our child, but it holds its lock until it
		// exits.
		deadline := time.Now().Add(reapTimeout)
		for lockHeld(h.m.dir(h.id)) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The monitor has gone: remove the container and the monitor's
	// directory.
	if h.ctr != nil {
		h.ctr.Release()
	}
	if err := h.m.removeLeftovers(h.id); err != nil {
		return fmt.Errorf("delete container %s: %w", h.id, err)
	}
	h.deleted = true
	return nil
}

// dial connects to the monitor in dir.
func dial(dir string) (net.Conn, error) {
	var conn net.Conn
	err := viaDirFD(dir, func(short string) error {
		c, err := net.DialTimeout("unix", short, 5*time.Second)
		conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connect to monitor: %w", err)
	}
	return conn, nil
}

func writeRequest(conn net.Conn, req request) error {
	b, _ := json.Marshal(req)
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("send %s to monitor: %w", req.Op, err)
	}
	return conn.SetWriteDeadline(time.Time{})
}

// request1 sends one request to the monitor in dir and reads the answer
// within timeout.
func request1(dir string, req request, timeout time.Duration) (response, error) {
	var resp response
	conn, err := dial(dir)
	if err != nil {
		return resp, err
	}
	defer conn.Close()
	if err := writeRequest(conn, req); err != nil {
		return resp, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReaderSize(conn, 512).ReadBytes('\n')
	if err != nil {
		return resp, fmt.Errorf("%s: no answer from the monitor: %w", req.Op, err)
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		return resp, fmt.Errorf("%s: monitor answer %q: %w", req.Op, line, err)
	}
	return resp, nil
}

// Package ctl owns the start protocol between the daemon and a monitor
// process: the messages on the monitor's inherited control socket (a
// SOCK_SEQPACKET pair, fd 3 in the monitor), one message per packet.
//
//	daemon  -> monitor  Start, with the fds FDLock... as SCM_RIGHTS
//	monitor -> daemon   "pid N 1" once it forked the container init in
//	                    the cgroup sent along, "pid N 0" outside it (an
//	                    older kernel: the daemon moves it), or
//	                    "err MESSAGE"
//	monitor -> daemon   "exited" if the init ends before Started
//	daemon  -> monitor  Started + the state.json document, once the
//	                    container's program runs; the daemon then closes
//	                    the socket
//
// A socket closed before Started means the start failed: the monitor kills
// the init and exits. A monitor waiting for its Start (a spare) exits when
// the socket closes. Both sides import this package; it uses strings and
// strconv only, to keep the monitor program small.
package ctl

import (
	"errors"
	"strconv"
	"strings"
)

// FD is the monitor's end of the control socket.
const FD = 3

// The fds of a Start message, in this order.
const (
	FDLock     = iota // the state dir's lock, held by the monitor for life
	FDListener        // the listening socket the monitor serves
	FDExe             // the binary to run as the container init
	FDConfig          // the init's config pipe (its fd 3)
	FDErrors          // the init's error pipe (its fd 4)
	FDCgroup          // the cgroup to clone the init into, with Start.CgroupFD
)

// Replies and the daemon's last message.
const (
	PidReply = "pid "
	ErrReply = "err "
	Exited   = "exited"
	Started  = "started\n"
)

// Names in a monitor's state directory that both sides use.
const (
	ExitFile = "exit.json"   // how the container ended, by the monitor
	SockFile = "sock"        // the monitor's listening socket
	LogFile  = "monitor.log" // the monitor's own lines and stderr
)

// Pid is the reply once the init is forked: its pid, and whether it was
// born in the cgroup sent along.
func Pid(pid int, inCgroup bool) string {
	born := "0"
	if inCgroup {
		born = "1"
	}
	return PidReply + strconv.Itoa(pid) + " " + born
}

// ParsePid reads a Pid reply.
func ParsePid(reply string) (pid int, inCgroup bool, err error) {
	rest, ok := strings.CutPrefix(reply, PidReply)
	f := strings.Fields(rest)
	if !ok || len(f) != 2 || (f[1] != "0" && f[1] != "1") {
		return 0, false, errors.New("monitor answer " + strconv.Quote(reply))
	}
	if pid, err = strconv.Atoi(f[0]); err != nil {
		return 0, false, errors.New("monitor answer " + strconv.Quote(reply))
	}
	return pid, f[1] == "1", nil
}

// Start is the daemon's request: fork the container init, then monitor it.
type Start struct {
	Dir        string // the monitor's state dir
	LogPath    string // the container's output; empty discards it
	LogMaxSize int64
	LogKeep    int
	Cloneflags uintptr
	CgroupFD   bool     // FDCgroup is sent: clone the init into it
	Args       []string // the init's argv
}

// Marshal encodes s: its fields separated by NUL bytes.
func (s Start) Marshal() []byte {
	cg := "0"
	if s.CgroupFD {
		cg = "1"
	}
	f := append([]string{s.Dir, s.LogPath, strconv.FormatInt(s.LogMaxSize, 10), strconv.Itoa(s.LogKeep),
		strconv.FormatUint(uint64(s.Cloneflags), 10), cg}, s.Args...)
	return []byte(strings.Join(f, "\x00"))
}

// FDs is the number of fds that come with s.
func (s Start) FDs() int {
	if s.CgroupFD {
		return FDCgroup + 1
	}
	return FDCgroup
}

// ParseStart decodes a Start message.
func ParseStart(b []byte) (Start, error) {
	f := strings.Split(string(b), "\x00")
	if len(f) < 7 {
		return Start{}, errors.New("start message: too few fields")
	}
	max, err1 := strconv.ParseInt(f[2], 10, 64)
	keep, err2 := strconv.Atoi(f[3])
	flags, err3 := strconv.ParseUint(f[4], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil || (f[5] != "0" && f[5] != "1") {
		return Start{}, errors.New("start message: bad number")
	}
	return Start{Dir: f[0], LogPath: f[1], LogMaxSize: max, LogKeep: keep, Cloneflags: uintptr(flags), CgroupFD: f[5] == "1", Args: f[6:]}, nil
}

//go:build linux

package lab

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperArg as the first argument makes the test binary the lab's workload
// instead of running tests: no extra binary to build.
const helperArg = "__lab_helper"

// testBinary is this test binary, set by TestMain.
var testBinary string

// port is where serve listens, TCP and UDP, in every node.
const port = "7000"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == helperArg {
		if err := helper(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// A binary built with -race sleeps a second before exiting with status
	// 0 (GORACE atexit_sleep_ms, default 1000); the helpers exit often.
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testBinary = exe
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// self is argv for a helper run of the test binary.
func self(args ...string) []string {
	return append([]string{testBinary, helperArg}, args...)
}

// helper modes:
//
//	serve [-deaf]               echo lines on TCP and datagrams on UDP at :7000,
//	                            say $LAB_GREETING; exit 0 on SIGTERM, or
//	                            ignore it with -deaf
//	dial tcp|udp ADDR TIMEOUT   send "ping", expect it back within TIMEOUT
//	spawn                       start an idle child in this process group and
//	                            one in a new session, print their pids, idle
//	idle                        block forever
func helper(args []string) error {
	if len(args) == 0 {
		return errors.New("helper: no mode")
	}
	switch mode, args := args[0], args[1:]; mode {
	case "serve":
		return serve(len(args) > 0 && args[0] == "-deaf")
	case "dial":
		if len(args) != 3 {
			return errors.New("usage: dial tcp|udp ADDR TIMEOUT")
		}
		timeout, err := time.ParseDuration(args[2])
		if err != nil {
			return err
		}
		return dial(args[0], args[1], timeout)
	case "spawn":
		return spawn()
	case "idle":
		return idle()
	}
	return fmt.Errorf("helper: unknown mode %q", args[0])
}

func serve(deaf bool) error {
	if deaf {
		signal.Ignore(syscall.SIGTERM)
	} else {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		go func() {
			<-sigs
			fmt.Println("sigterm")
			os.Exit(0)
		}()
	}
	ln, err := net.Listen("tcp4", ":"+port)
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp4", ":"+port)
	if err != nil {
		return err
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	fmt.Println("serving on", port, "deaf", deaf, "greeting", os.Getenv("LAB_GREETING"))
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			s := bufio.NewScanner(c)
			for s.Scan() {
				fmt.Fprintln(c, s.Text())
			}
		}()
	}
}

func dial(proto, addr string, timeout time.Duration) error {
	c, err := net.DialTimeout(proto+"4", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintln(c, "ping"); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if got := string(buf[:n]); got != "ping\n" {
		return fmt.Errorf("got %q, want ping", got)
	}
	fmt.Println("pong")
	return nil
}

func spawn() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	group := exec.Command(exe, helperArg, "idle")
	session := exec.Command(exe, helperArg, "idle")
	session.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	for _, c := range []*exec.Cmd{group, session} {
		if err := c.Start(); err != nil {
			return err
		}
	}
	fmt.Println("group-child", group.Process.Pid)
	fmt.Println("session-child", session.Process.Pid)
	return idle()
}

// idle blocks in Accept on a listener nobody knows.
func idle() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	_, err = ln.Accept()
	return err
}

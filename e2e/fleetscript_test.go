package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/shoal-edge/shoal/internal/mountinfo"
	"github.com/shoal-edge/shoal/internal/testutil"
	"golang.org/x/sys/unix"
)

// scriptFleet is the fleet of one script of testdata/fleet: the nodes its
// `node` commands started, in that order.
type scriptFleet struct {
	*fleet
	names []string
	up    map[string][]string // node -> its `shoal up` argv without the token, for start
	ran   map[string]bool     // it answered once: the cleanup starts it again
	wiped map[string]bool
}

// scriptFleetKey holds a script's *scriptFleet in its Env.Values.
type scriptFleetKey struct{}

// The generous bounds of a loaded machine: a node's start, and a clean
// stop (which waits for gossip to hear it leave).
const (
	scriptNodeReady = 30 * time.Second
	scriptNodeStop  = 30 * time.Second
)

func fleetOf(ts *testscript.TestScript) *scriptFleet {
	return ts.Value(scriptFleetKey{}).(*scriptFleet)
}

// fleetCmds are the commands of TestFleetScripts (see the top of
// script_test.go).
func fleetCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"node": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) == 0 {
				ts.Fatalf("usage: node NAME [shoal up flags]")
			}
			fleetOf(ts).node(ts, neg, args[0], args[1:])
		},
		"use": func(ts *testscript.TestScript, neg bool, args []string) {
			f := fleetOf(ts)
			noNeg(ts, neg, "use")
			if len(args) != 1 {
				ts.Fatalf("usage: use NAME")
			}
			ts.Setenv("SHOAL_DATA_DIR", f.dir(ts, args[0]))
		},
		"kill9": func(ts *testscript.TestScript, neg bool, args []string) {
			f := fleetOf(ts)
			noNeg(ts, neg, "kill9")
			for _, name := range args {
				f.dir(ts, name)
				ts.Check(f.lab.Kill9(name))
			}
		},
		// Not "stop": testscript's own stop ends the script.
		"sigterm": func(ts *testscript.TestScript, neg bool, args []string) {
			f := fleetOf(ts)
			noNeg(ts, neg, "sigterm")
			for _, name := range args {
				f.dir(ts, name)
				ts.Check(f.lab.Stop(name, scriptNodeStop))
			}
		},
		"start": func(ts *testscript.TestScript, neg bool, args []string) {
			f := fleetOf(ts)
			noNeg(ts, neg, "start")
			if len(args) == 0 {
				ts.Fatalf("usage: start NAME [FLAGS]")
			}
			f.start(ts, args[0], args[1:])
		},
		"wipe": func(ts *testscript.TestScript, neg bool, args []string) {
			f := fleetOf(ts)
			noNeg(ts, neg, "wipe")
			for _, name := range args {
				f.wipe(ts, name)
			}
		},
		"nodelog": func(ts *testscript.TestScript, neg bool, args []string) {
			f := fleetOf(ts)
			noNeg(ts, neg, "nodelog")
			if len(args) != 1 {
				ts.Fatalf("usage: nodelog NAME")
			}
			f.dir(ts, args[0])
			log, err := os.ReadFile(f.lab.LogPath(args[0]))
			ts.Check(err)
			ts.Stdout().Write(log)
		},
		"partition": func(ts *testscript.TestScript, neg bool, args []string) {
			f := fleetOf(ts)
			noNeg(ts, neg, "partition")
			if len(args) != 2 {
				ts.Fatalf("usage: partition A[,A...] B[,B...]")
			}
			ts.Check(f.lab.Partition(strings.Split(args[0], ","), strings.Split(args[1], ",")))
		},
		"heal": func(ts *testscript.TestScript, neg bool, args []string) {
			noNeg(ts, neg, "heal")
			ts.Check(fleetOf(ts).lab.Heal())
		},
		"leader": func(ts *testscript.TestScript, neg bool, args []string) {
			f := fleetOf(ts)
			noNeg(ts, neg, "leader")
			if len(args) < 1 || len(args) > 2 {
				ts.Fatalf("usage: leader VAR [FOLLOWER_VAR]")
			}
			f.leader(ts, args)
		},
	}
}

func noNeg(ts *testscript.TestScript, neg bool, cmd string) {
	if neg {
		ts.Fatalf("unsupported: ! %s", cmd)
	}
}

// dir is the data dir of node name; an unknown name ends the script.
func (f *scriptFleet) dir(ts *testscript.TestScript, name string) string {
	dir, ok := f.dirs[name]
	if !ok {
		ts.Fatalf("no node %s (start one with: node %s)", name, name)
	}
	return dir
}

// node starts node name: the first bootstraps the fleet, the others join
// with a running voter's token (freshToken). It returns once the node
// answers with a leader; with neg, once `shoal up` has exited non-zero, its
// output the script's stdout.
func (f *scriptFleet) node(ts *testscript.TestScript, neg bool, name string, flags []string) {
	if _, ok := f.dirs[name]; ok {
		ts.Fatalf("node %s exists (start it again with: start %s)", name, name)
	}
	f.add(name)
	f.names = append(f.names, name)
	f.up[name] = append(f.upArgs(name, name, ""), flags...)
	argv := append(f.upArgs(name, name, f.freshToken()), flags...)
	logStart := fileSize(f.lab.LogPath(name))
	ts.Check(f.lab.Start(name, argv, nil))
	if neg {
		err := f.lab.Wait(name, scriptNodeReady)
		out, _ := readFrom(f.lab.LogPath(name), logStart)
		ts.Stdout().Write(out)
		var exit *exec.ExitError
		switch {
		case err == nil:
			ts.Fatalf("shoal up of %s exited with status 0", name)
		case !errors.As(err, &exit):
			ts.Fatalf("%v", err)
		}
		return
	}
	if f.token == "" {
		f.admin = name
		f.waitReady(ts, name, func(dir string) error {
			out, err := shoalAt(f.bin, dir, "token")
			if err != nil {
				return err
			}
			f.token, err = tokenOf(out)
			return err
		})
		return
	}
	f.waitReady(ts, name, func(dir string) error {
		st, err := statusAt(f.bin, dir)
		if err == nil && (st.ClusterID == "" || st.Leader == "") {
			err = fmt.Errorf("%s has no leader yet: %+v", name, st)
		}
		return err
	})
}

// freshToken is the join token as a running voter prints it now (the
// bootstrap node's names only the voters of its time, which may be gone),
// or the first node's if none answers; "" before the first node.
func (f *scriptFleet) freshToken() string {
	for _, n := range f.names {
		if !f.lab.Running(n) {
			continue
		}
		if out, err := shoalAt(f.bin, f.dirs[n], "token"); err == nil {
			if tok, err := tokenOf(out); err == nil {
				return tok
			}
		}
	}
	return f.token
}

// start starts node name again, as `shoal up` with the flags of its
// `node` or, if given, flags instead (the data dir holds its identity: no
// token), and waits until it answers on its socket.
func (f *scriptFleet) start(ts *testscript.TestScript, name string, flags []string) {
	f.dir(ts, name)
	if f.wiped[name] {
		ts.Fatalf("node %s was wiped", name)
	}
	if len(flags) > 0 {
		f.up[name] = append(f.upArgs(name, name, ""), flags...)
	}
	ts.Check(f.lab.Start(name, f.up[name], nil))
	f.waitReady(ts, name, func(dir string) error {
		_, err := shoalAt(f.bin, dir, "status")
		return err
	})
}

// waitReady waits until ready passes for node name's data dir, and ends
// the script with the node's log if its `shoal up` exits first.
func (f *scriptFleet) waitReady(ts *testscript.TestScript, name string, ready func(dir string) error) {
	err := testutil.Poll(scriptNodeReady, func() error {
		if !f.lab.Running(name) {
			return errors.New("exited")
		}
		return ready(f.dirs[name])
	})
	if err != nil {
		log, _ := os.ReadFile(f.lab.LogPath(name))
		ts.Fatalf("node %s not ready: %v\n%s", name, err, log)
	}
	f.ran[name] = true
}

// leader sets args[0] to the leader's name as the node in use sees it and
// args[1], if given, to the first running node that is not the leader.
func (f *scriptFleet) leader(ts *testscript.TestScript, args []string) {
	var st clusterStatus
	err := testutil.Poll(scriptNodeReady, func() error {
		var err error
		st, err = statusAt(f.bin, ts.Getenv("SHOAL_DATA_DIR"))
		if err == nil && st.Leader == "" {
			err = fmt.Errorf("no leader: %+v", st)
		}
		return err
	})
	ts.Check(err)
	ts.Setenv(args[0], st.Leader)
	if len(args) == 1 {
		return
	}
	for _, n := range f.names {
		if n != st.Leader && f.lab.Running(n) {
			ts.Setenv(args[1], n)
			return
		}
	}
	ts.Fatalf("no running node but the leader %s", st.Leader)
}

// wipe takes node name away for good, as a broken or re-flashed device
// goes: its `shoal up` and its containers' monitors are killed (the
// containers die with their monitor), and the mounts under its data dir
// are detached. Its cgroups go with the fleet's; the cleanup leaves the
// node alone.
func (f *scriptFleet) wipe(ts *testscript.TestScript, name string) {
	dir := f.dir(ts, name)
	ts.Check(f.lab.Kill9(name))
	f.wiped[name] = true
	err := testutil.Poll(scriptNodeStop, func() error {
		monitors := monitorsOf(dir, true)
		for _, m := range monitors {
			pid, _, _ := strings.Cut(m, ":")
			if n, err := strconv.Atoi(pid); err == nil {
				syscall.Kill(n, syscall.SIGKILL)
			}
		}
		if len(monitors) > 0 {
			return fmt.Errorf("monitors of %s: %v", name, monitors)
		}
		return nil
	})
	ts.Check(err)
	ts.Check(unmountUnder(dir))
}

// unmountUnder detaches every mount under dir, the deepest first.
func unmountUnder(dir string) error {
	file, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer file.Close()
	mounts, err := mountinfo.Parse(file)
	if err != nil {
		return err
	}
	var points []string
	for _, m := range mounts {
		if strings.HasPrefix(m.Point, dir+"/") {
			points = append(points, m.Point)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// cleanup runs after the script: every node that ran comes back, the
// cluster removes every app, the nodes stop cleanly, and nothing of them
// may remain. The lab's teardown comes after it, killing whatever a
// failed step left running.
func (f *scriptFleet) cleanup(t testing.TB) {
	if err := f.lab.Heal(); err != nil {
		t.Errorf("heal: %v", err)
	}
	for _, name := range f.names {
		if f.ran[name] && !f.lab.Running(name) && !f.wiped[name] {
			// One that left exits at once; its data dir refuses to start.
			f.lab.Start(name, f.up[name], nil)
		}
	}
	err := testutil.Poll(60*time.Second, func() error {
		var errs []error
		for _, name := range f.names {
			if !f.lab.Running(name) {
				continue
			}
			dir := f.dirs[name]
			st, err := statusAt(f.bin, dir)
			if err != nil || st.Leader == "" || st.Stale {
				errs = append(errs, fmt.Errorf("%s: no leader: %+v %v", name, st, err))
				continue
			}
			out, err := shoalAt(f.bin, dir, "ps", "-o", "json")
			if err != nil {
				return err
			}
			var ps []instance
			if err := json.Unmarshal([]byte(out), &ps); err != nil {
				return err
			}
			apps := map[string]bool{}
			for _, i := range ps {
				apps[i.App] = true
			}
			if len(apps) == 0 {
				return nil
			}
			_, err = shoalAt(f.bin, dir, append([]string{"rm"}, slices.Sorted(maps.Keys(apps))...)...)
			return err
		}
		return errors.Join(append(errs, errors.New("no node answers with a leader"))...)
	})
	if err != nil {
		t.Errorf("remove the script's apps: %v", err)
	}
	for _, name := range f.names {
		if !f.lab.Running(name) {
			continue
		}
		err := testutil.Poll(60*time.Second, func() error {
			if m := monitorsOf(f.dirs[name], false); len(m) > 0 {
				return fmt.Errorf("monitors of %s still running: %v", name, m)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
	var wg sync.WaitGroup
	for _, name := range f.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.lab.Stop(name, scriptNodeStop); err != nil {
				t.Errorf("stop %s: %v", name, err)
			}
		}()
	}
	wg.Wait()
	for _, name := range f.names {
		dir := f.dirs[name]
		if _, err := os.Stat(filepath.Join(dir, "node.json")); err != nil || f.wiped[name] {
			continue // it never ran anything, or wipe removed it
		}
		if left := leftovers(dir, cgroupParentOf(t, dir)); len(left) > 0 {
			t.Errorf("left behind by %s: %v", name, left)
		}
	}
}

// shoalAt runs `shoal ARGS` against the node of data dir dir.
func shoalAt(bin, dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--data-dir", dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("shoal %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func statusAt(bin, dir string) (clusterStatus, error) {
	var st clusterStatus
	out, err := shoalAt(bin, dir, "status", "-o", "json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom reads path from offset on.
func readFrom(path string, offset int64) ([]byte, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	if _, err := file.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(file)
}

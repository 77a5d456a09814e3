package e2e

// The scenario suites: shoal as its users run it, one .txtar script per
// scenario (github.com/rogpeppe/go-internal/testscript), asserting the
// CLI's output and exit status.
//
// TestScripts (testdata/scripts) runs one node per script on loopback,
// started by the script itself (`exec shoal up ... &`).
//
// TestFleetScripts (testdata/fleet) runs several real `shoal up`
// processes, each in a network namespace of its own (internal/testutil/lab)
// with its own data dir and the default ports, so that scripts can kill,
// stop and cut nodes apart. The CLI talks to a node through the unix
// socket of its data dir (SHOAL_DATA_DIR), as on a device. Commands:
//
//	node NAME [FLAGS]   start `shoal up --name NAME FLAGS` in a new network
//	                    namespace NAME: the first node bootstraps, the others
//	                    join with the token of a running voter (--join-file,
//	                    as `shoal token` prints it then); wait until the
//	                    node answers with a leader. `! node` waits for `shoal
//	                    up` to exit non-zero; its output is stdout
//	use NAME            point the CLI at node NAME (SHOAL_DATA_DIR)
//	kill9 NAME...       kill -9 the node's `shoal up` (its containers stay)
//	sigterm NAME...     stop the node's `shoal up` with SIGTERM and wait for
//	                    a clean exit (30 s at most)
//	start NAME [FLAGS]  `shoal up` again with the node's FLAGS (or these, from
//	                    now on), no token; wait until it answers on its socket
//	wipe NAME...        the device is gone for good: kill -9 its `shoal up`
//	                    and its containers, detach its mounts; the cleanup
//	                    leaves it alone
//	nodelog NAME        the node's log (all its runs) as stdout
//	partition A[,A] B[,B]  cut the nodes of one list from the other's, both ways
//	heal                remove every cut
//	leader VAR [FVAR]   set $VAR to the leader's name as the node in use
//	                    sees it (waiting for one), and $FVAR to the first
//	                    running node that is not the leader
//	waitfor [-t S] REGEXP ARGS...  as in TestScripts, below
//
// After a fleet script, every node that ever answered starts again, the
// apps are removed, the nodes stop, and no process, mount or cgroup of
// theirs may be left; then the lab's teardown removes the namespaces.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/rogpeppe/go-internal/testscript"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// TestScripts runs the CLI scenarios of testdata/scripts: each script has
// `shoal` on its PATH (the built binary), its own node's data dir in
// SHOAL_DATA_DIR, free loopback ports in PORT and GOSSIP_PORT for the
// `exec shoal up ... &` it starts (PORT2 and GOSSIP_PORT2 for a second
// node), the busybox image archive in BUSYBOX and
// a loopback registry holding it as $REGISTRY/edge/busybox:1.
func TestScripts(t *testing.T) {
	testutil.RequireRoot(t)
	busybox := testutil.BuildBusyboxImage(t)
	reg := pushArchive(t, busybox, "edge/busybox:1")
	runScripts(t, "scripts", map[string]string{"BUSYBOX": busybox, "REGISTRY": reg})
}

// runScripts runs the scenarios of testdata/dir: each script has `shoal` on
// its PATH, its own node's data dir in SHOAL_DATA_DIR, free loopback ports
// in PORT and GOSSIP_PORT, and vars in its environment. What a script's
// apps ran must be gone when it ends.
func runScripts(t *testing.T, dir string, vars map[string]string) {
	bin := shoalBin(t)
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", dir),
		Setup: func(env *testscript.Env) error {
			data := filepath.Join(env.WorkDir, "data")
			env.Setenv("PATH", filepath.Dir(bin)+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("SHOAL_DATA_DIR", data)
			tb := env.T().(testing.TB)
			env.Setenv("PORT", fmt.Sprint(testutil.FreePort(tb)))
			env.Setenv("GOSSIP_PORT", fmt.Sprint(testutil.FreePort(tb)))
			// For a second node of the script's own.
			env.Setenv("PORT2", fmt.Sprint(testutil.FreePort(tb)))
			env.Setenv("GOSSIP_PORT2", fmt.Sprint(testutil.FreePort(tb)))
			for k, v := range vars {
				env.Setenv(k, v)
			}
			// Runs after the script stopped its `shoal up`: what the
			// script's apps ran must be gone with them.
			env.Defer(func() {
				b, err := os.ReadFile(filepath.Join(data, "node.json"))
				if err != nil {
					return // the node never ran
				}
				var id struct{ ID string }
				if err := json.Unmarshal(b, &id); err != nil || len(id.ID) < 12 {
					env.T().Fatal("node.json:", err)
				}
				cgroup := "shoal-" + id.ID[:12]
				if len(leftovers(data, cgroup)) > 0 {
					upArgs := []string{"--bind", "127.0.0.1", "--port", env.Getenv("PORT"), "--gossip-port", env.Getenv("GOSSIP_PORT")}
					if err := rescueScriptNode(bin, data, upArgs...); err != nil {
						env.T().Log("remove the script's apps:", err)
					}
				}
				err = testutil.Poll(30*time.Second, func() error {
					if left := leftovers(data, cgroup); len(left) > 0 {
						return fmt.Errorf("left behind after shoal up exited: %v", left)
					}
					return nil
				})
				if err != nil {
					env.T().Fatal(err)
				}
			})
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfor": waitFor(bin),
		},
	})
}

// TestFleetScripts runs the scenarios of testdata/fleet: several nodes,
// each in a network namespace of its own, driven by the commands at the top
// of this file. Each script has `shoal` on its PATH and the busybox image
// archive in BUSYBOX.
func TestFleetScripts(t *testing.T) {
	t.Parallel() // as the Go tests of fleets: each script has its own lab
	testutil.RequireRoot(t)
	bin := shoalBin(t)
	busybox := testutil.BuildBusyboxImage(t)
	cmds := fleetCmds()
	cmds["waitfor"] = waitFor(bin)
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "fleet"),
		Setup: func(env *testscript.Env) error {
			t := env.T().(testing.TB)
			f := &scriptFleet{fleet: newFleet(t), up: map[string][]string{}, ran: map[string]bool{}, wiped: map[string]bool{}}
			env.Values[scriptFleetKey{}] = f
			env.Setenv("PATH", filepath.Dir(bin)+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("BUSYBOX", busybox)
			// Before the lab's teardown, which t.Cleanup runs.
			env.Defer(func() { f.cleanup(t) })
			return nil
		},
		Cmds: cmds,
	})
}

// waitFor is `waitfor [-t SECONDS] REGEXP ARGS...`: it runs `shoal ARGS...`
// until its stdout matches REGEXP (30s by default), then leaves that
// output as the script's stdout and stderr; `! waitfor` waits until it
// does not match. Only the last run's output goes into the script's log.
func waitFor(bin string) func(ts *testscript.TestScript, neg bool, args []string) {
	return func(ts *testscript.TestScript, neg bool, args []string) {
		timeout := 30 * time.Second
		if len(args) > 2 && args[0] == "-t" {
			d, err := time.ParseDuration(args[1] + "s")
			ts.Check(err)
			timeout, args = d, args[2:]
		}
		if len(args) < 2 {
			ts.Fatalf("usage: waitfor [-t SECONDS] REGEXP ARGS...")
		}
		re, err := regexp.Compile("(?m)" + args[0])
		ts.Check(err)
		env := os.Environ()
		for _, k := range []string{"SHOAL_DATA_DIR", "SHOAL_SERVER", "SHOAL_CREDENTIAL", "TERM"} {
			env = append(env, k+"="+ts.Getenv(k))
		}
		var stdout, stderr bytes.Buffer
		err = testutil.Poll(timeout, func() error {
			stdout.Reset()
			stderr.Reset()
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args[1:]...)
			cmd.Env, cmd.Dir = env, ts.MkAbs(".")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if re.MatchString(stdout.String()) == neg {
				matches := "does not match"
				if neg {
					matches = "matches"
				}
				return fmt.Errorf("the stdout of shoal %s %s %q (exit: %v)", strings.Join(args[1:], " "), matches, args[0], err)
			}
			return nil
		})
		ts.Stdout().Write(stdout.Bytes())
		ts.Stderr().Write(stderr.Bytes())
		if err != nil {
			ts.Fatalf("after %v: %v", timeout, err)
		}
	}
}

// pushArchive serves a registry on loopback and pushes the image archive
// to it as repoTag; it returns the registry's host:port.
func pushArchive(t *testing.T, archive, repoTag string) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return host
}

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
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
	bin := shoalBin(t)
	busybox := testutil.BuildBusyboxImage(t)
	reg := pushArchive(t, busybox, "edge/busybox:1")
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "scripts"),
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
			env.Setenv("BUSYBOX", busybox)
			env.Setenv("REGISTRY", reg)
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

// waitFor is `waitfor [-t SECONDS] REGEXP ARGS...`: it runs `shoal ARGS...`
// until its stdout matches REGEXP (30s by default), then leaves that
// output as the script's stdout and stderr; `! waitfor` waits until it
// does not match.
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
		shoal := strings.Join(args[1:], " ")
		err = testutil.Poll(timeout, func() error {
			err := ts.Exec(bin, args[1:]...)
			if out := ts.ReadFile("stdout"); re.MatchString(out) == neg {
				return fmt.Errorf("shoal %s: %v: stdout %q, stderr %q", shoal, err, out, ts.ReadFile("stderr"))
			}
			return nil
		})
		ts.Check(err)
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

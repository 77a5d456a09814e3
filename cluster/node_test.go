package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// startNode runs a real node (bbolt, Raft over TCP on loopback, memberlist)
// in this process and stops it when the test ends.
func startNode(t *testing.T, dir, name string) (*Node, func()) {
	t.Helper()
	return startNodeWith(t, dir, name, nil)
}

// startNodeWith is startNode with the config changed by set.
func startNodeWith(t *testing.T, dir, name string, set func(*Config)) (*Node, func()) {
	t.Helper()
	testutil.RequireRoot(t)
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Name, cfg.BindAddr = dir, name, "127.0.0.1"
	cfg.GossipPort, cfg.Port = testutil.FreePort(t), testutil.FreePort(t)
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if set != nil {
		set(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		n.Close()
	}
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := n.WaitLeader(wctx); err != nil {
		t.Fatalf("no leader: %v", err)
	}
	return n, stop
}

func TestApplyScheduleAndPersist(t *testing.T) {
	dir := t.TempDir()
	n, stop := startNode(t, dir, "n1")
	ctx := context.Background()

	st, err := n.Status(ctx)
	if err != nil || st.Leader != "n1" || st.Role != "voter" || st.Stale || st.ClusterID == "" {
		t.Fatalf("status = %+v, %v", st, err)
	}
	res, err := n.apps.Apply(ctx, []api.App{{Name: "web", Image: "127.0.0.1:1/missing:1", Replicas: 2}})
	if err != nil || len(res) != 1 || !res[0].Changed {
		t.Fatalf("apply = %+v, %v", res, err)
	}
	// The scheduler places both replicas on the only node; the agent
	// cannot start them and says why.
	testutil.WaitFor(t, 10*time.Second, func() error {
		ps, err := n.instances.PS(ctx, "")
		if err != nil {
			return err
		}
		if len(ps) != 2 {
			return fmt.Errorf("%d instances, want 2", len(ps))
		}
		for _, s := range ps {
			if s.Node != "n1" || !strings.Contains(s.Error, "missing:1") {
				return fmt.Errorf("instance %s: node %s state %s error %q", s.Instance, s.Node, s.State, s.Error)
			}
		}
		return nil
	})
	nodes, err := n.fleet.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].State != "alive" || nodes[0].Instances != 2 || nodes[0].Role != "voter" {
		t.Fatalf("nodes = %+v, %v", nodes, err)
	}
	clusterID := st.ClusterID

	// Same data dir again: same cluster, same apps.
	stop()
	n2, _ := startNode(t, dir, "")
	st2, _ := n2.Status(ctx)
	if st2.ClusterID != clusterID || st2.Node != "n1" {
		t.Fatalf("after restart: %+v, want cluster %s node n1", st2, clusterID)
	}
	if _, err := n2.store.App("web"); err != nil {
		t.Fatalf("app lost across restart: %v", err)
	}
	if err := n2.apps.Delete(ctx, []string{"web"}); err != nil {
		t.Fatal(err)
	}
	if err := n2.apps.Delete(ctx, []string{"web"}); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("second rm: %v, want not found", err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if ps, _ := n2.instances.PS(ctx, ""); len(ps) != 0 {
			return fmt.Errorf("instances left: %+v", ps)
		}
		return nil
	})
}

func TestIdentityIsKept(t *testing.T) {
	dir := t.TempDir()
	id, fresh, err := loadIdentity(dir, "edge-1")
	if err != nil || !fresh {
		t.Fatalf("new identity: fresh %v, %v", fresh, err)
	}
	if err := writeIdentity(dir, id); err != nil {
		t.Fatal(err)
	}
	again, fresh, err := loadIdentity(dir, "")
	if err != nil || again != id || fresh {
		t.Fatalf("identity changed: %+v -> %+v (fresh %v, %v)", id, again, fresh, err)
	}
	if _, _, err := loadIdentity(dir, "other"); err == nil || !strings.Contains(err.Error(), `belongs to node "edge-1"`) {
		t.Fatalf("renaming a data dir: %v", err)
	}
	os.WriteFile(dir+"/node.json", []byte("{"), 0o600)
	if _, _, err := loadIdentity(dir, ""); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("damaged node.json: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.BindAddr, c.Port, c.GossipPort, c.Voters, c.Name = "nope", 0, 0, 2, "Bad_Name"
	c.AllowHostPaths = []string{"none", "/srv/ok", "srv/relative"}
	c.ImageMaxUnpacked, c.ImagePullStall, c.ImagePullTimeout = 100, 0, -time.Second
	// Labels travel in gossip metadata, which memberlist caps at 512 bytes.
	c.Labels = map[string]string{"site": strings.Repeat("x", 300)}
	err := c.Validate()
	for _, want := range []string{`bind "nope"`, "port 0", "voters 2", `name "Bad_Name"`, `allow host path "srv/relative"`,
		"image max unpacked 100", "image pull stall 0s", "image pull timeout -1s", "labels take 311 bytes: at most 256"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
}

func TestOneNodePerDataDir(t *testing.T) {
	dir := t.TempDir()
	startNode(t, dir, "n1")
	cfg := DefaultConfig()
	cfg.DataDir, cfg.BindAddr = dir, "127.0.0.1"
	cfg.GossipPort, cfg.Port = testutil.FreePort(t), testutil.FreePort(t)
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "in use by another shoal node") {
		t.Fatalf("second node on the same data dir: %v", err)
	}
}

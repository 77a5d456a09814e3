package cluster

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// A node that left is refused on every protocol of the cluster port, even
// with its certificate, which the CA still vouches for.
func TestLeftNodeIsRevoked(t *testing.T) {
	a, _ := startNode(t, t.TempDir(), "a")
	tok, err := a.JoinToken()
	if err != nil {
		t.Fatal(err)
	}
	bdir := t.TempDir()
	b, _ := startNodeWith(t, bdir, "b", func(c *Config) { c.Join = tok })
	startNodeWith(t, t.TempDir(), "c", func(c *Config) { c.Join = tok })
	// Three voters: the bootstrap node no longer runs a lone voter's
	// timeouts (its leader lease above all), and the cluster has a leader.
	testutil.WaitFor(t, 15*time.Second, func() error {
		cf := a.raft.r().GetConfiguration()
		if err := cf.Error(); err != nil {
			return err
		}
		voters := 0
		for _, s := range cf.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				voters++
			}
		}
		if voters != 3 {
			return fmt.Errorf("%d voters", voters)
		}
		if a.raft.isFast() {
			return fmt.Errorf("a still runs fast timeouts")
		}
		if addr, _ := a.raft.r().LeaderWithID(); addr == "" {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	mat, ok, err := loadMaterial(bdir)
	if err != nil || !ok {
		t.Fatalf("b's material: %v", err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: mat.ident.ClientConfig(pki.ProtoNode, nil)}, Timeout: 5 * time.Second}
	readIndex := func() error {
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/v1/read-index", a.cfg.Port))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	}
	if err := readIndex(); err != nil {
		t.Fatalf("b before leaving: %v", err)
	}

	if _, err := b.Leave(context.Background(), api.LeaveRequest{}); err != nil {
		t.Fatal(err)
	}
	client.CloseIdleConnections()
	if err := readIndex(); err == nil {
		t.Fatal("a node that left was served")
	}
	if !a.store.Revoked(b.id.ID) {
		t.Fatal("b is not revoked")
	}
	cf := a.raft.r().GetConfiguration()
	if err := cf.Error(); err != nil {
		t.Fatal(err)
	}
	for _, s := range cf.Configuration().Servers {
		if s.ID == raft.ServerID(b.id.ID) {
			t.Fatal("b is still a raft server")
		}
	}
}

// A node dialled at an address that another node now holds is refused:
// the certificate must name the node meant.
func TestDialChecksTheNodeMeant(t *testing.T) {
	a, _ := startNode(t, t.TempDir(), "a")
	b, _ := startNode(t, t.TempDir(), "b") // another cluster: a's CA does not sign it
	aAddr := fmt.Sprintf("127.0.0.1:%d", a.cfg.Port)
	ctx := context.Background()

	c, err := a.dialNode(ctx, raftAddr(a.id.ID, aAddr), pki.ProtoNode, 5*time.Second)
	if err != nil {
		t.Fatalf("dial the node meant: %v", err)
	}
	c.Close()
	_, err = a.dialNode(ctx, raftAddr("0123456789abcdef0123456789abcdef", aAddr), pki.ProtoNode, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "not the node meant") {
		t.Fatalf("dial of another node's address: %v", err)
	}
	if _, err := a.dialNode(ctx, raftAddr(b.id.ID, fmt.Sprintf("127.0.0.1:%d", b.cfg.Port)), pki.ProtoNode, 5*time.Second); err == nil {
		t.Fatal("a node of another cluster was accepted")
	}
}

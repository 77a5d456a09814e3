package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/store"
)

// diskCert is who node.crt in dir names, read from the file.
func diskCert(t *testing.T, dir string) pki.NodeIdentity {
	t.Helper()
	m, ok, err := loadMaterial(dir)
	if err != nil || !ok {
		t.Fatalf("material of %s: %v", dir, err)
	}
	return m.ident.Node()
}

// A non-voter promoted by hand gets the CA key and its voter certificate,
// and can then lead the old leader; demoted, the old leader trades its
// voter certificate for a plain one and deletes its copy of the key.
func TestVoterCertificateFollowsTheRole(t *testing.T) {
	oneVoter := func(c *Config) { c.Voters = 1 }
	adir, bdir := t.TempDir(), t.TempDir()
	a, _ := startNodeWith(t, adir, "a", oneVoter)
	tok, err := a.JoinToken()
	if err != nil {
		t.Fatal(err)
	}
	if !diskCert(t, adir).Voter {
		t.Fatal("the bootstrap node's first certificate has no voter marker")
	}
	b, _ := startNodeWith(t, bdir, "b", func(c *Config) { oneVoter(c); c.Join = tok })
	bAddr := raftAddr(b.id.ID, fmt.Sprintf("127.0.0.1:%d", b.cfg.Port))
	testutil.WaitFor(t, 15*time.Second, func() error {
		if isVoterIn(configOf(a), b.id.ID) || !inConfig(configOf(a), b.id.ID) {
			return fmt.Errorf("b is no non-voter yet: %+v", configOf(a).Servers)
		}
		return nil
	})
	if diskCert(t, bdir).Voter || b.mat.ident.Node().Voter {
		t.Fatal("a non-voter has the voter marker")
	}

	testutil.WaitFor(t, 15*time.Second, func() error {
		return a.raft.r().AddVoter(raft.ServerID(b.id.ID), bAddr, 0, 5*time.Second).Error()
	})
	testutil.WaitFor(t, 15*time.Second, func() error {
		if b.cakey.get() == nil || !b.mat.ident.Node().Voter || !diskCert(t, bdir).Voter {
			return errors.New("the promoted b has no voter certificate yet")
		}
		return nil
	})
	// a follows b only if it admits b's Raft connections.
	testutil.WaitFor(t, 20*time.Second, func() error {
		if _, id := a.raft.r().LeaderWithID(); id == raft.ServerID(b.id.ID) {
			return nil
		}
		if err := a.raft.r().LeadershipTransferToServer(raft.ServerID(b.id.ID), bAddr).Error(); err != nil {
			return err
		}
		return errors.New("b does not lead yet")
	})

	testutil.WaitFor(t, 15*time.Second, func() error {
		return b.raft.r().DemoteVoter(raft.ServerID(a.id.ID), 0, 5*time.Second).Error()
	})
	testutil.WaitFor(t, 15*time.Second, func() error {
		if a.mat.ident.Node().Voter || diskCert(t, adir).Voter {
			return errors.New("the demoted a still has the voter marker")
		}
		if _, err := os.Stat(filepath.Join(adir, "tls", caKeyFile)); err == nil {
			return errors.New("the demoted a still has ca.key")
		}
		return nil
	})
}

func configOf(n *Node) raft.Configuration {
	f := n.raft.r().GetConfiguration()
	if f.Error() != nil {
		return raft.Configuration{}
	}
	return f.Configuration()
}

func inConfig(c raft.Configuration, id string) bool {
	for _, s := range c.Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

// Voters of a release without the voter marker, restarted with this one,
// issue themselves voter certificates before Raft starts and elect a
// leader: the connections between them carry the marker from the first.
func TestUpgradedVotersKeepLeading(t *testing.T) { upgradeVoters(t, false) }

// Voters of the release that kept the CA key in clear in the replicated
// state hold no ca.key: they take the key from their state at start, or
// none of them could lead.
func TestVotersWithTheCAKeyInTheirStateKeepLeading(t *testing.T) { upgradeVoters(t, true) }

// upgradeVoters runs three voters, stops them, gives them plain
// certificates (and, for keyInState, the CA key in clear in their state
// and no ca.key), starts them again and wants a leader.
func upgradeVoters(t *testing.T, keyInState bool) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	a, stopA := startNode(t, dirs[0], "a")
	tok, err := a.JoinToken()
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*Node{a}
	stops := []func(){stopA}
	for i, name := range []string{"b", "c"} {
		n, stop := startNodeWith(t, dirs[i+1], name, func(c *Config) { c.Join = tok })
		nodes, stops = append(nodes, n), append(stops, stop)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		for _, n := range nodes {
			if !isVoterIn(configOf(a), n.id.ID) || n.cakey.get() == nil {
				return fmt.Errorf("%s is no voter with the CA key yet", n.id.Name)
			}
		}
		return nil
	})
	ca := a.cakey.get()
	if keyInState {
		// The record migrateSecrets replaces, committed mid-term: the
		// leader migrates only when a term begins.
		legacy := store.LegacySecrets{CACert: ca.CertPEM(), CAKey: ca.KeyPEM(), JoinSecret: pki.NewSecret()}
		testutil.WaitFor(t, 10*time.Second, func() error {
			for _, n := range nodes {
				if n.raft.r().State() == raft.Leader {
					_, err := n.writes.applyLocal(store.PutSecrets{Secrets: legacy}, 5*time.Second)
					return err
				}
			}
			return errors.New("no leader")
		})
		testutil.WaitFor(t, 10*time.Second, func() error {
			for _, n := range nodes {
				if _, ok, err := n.store.LegacySecrets(); err != nil || !ok {
					return fmt.Errorf("%s has no record in clear yet (%v)", n.id.Name, err)
				}
			}
			return nil
		})
	}
	var cfgs []Config
	for i, n := range nodes {
		cfgs = append(cfgs, n.cfg)
		stops[i]()
		if keyInState {
			// A leader of a new term migrates the record: on a loaded
			// machine an election may come between the write and the
			// stop, and then there is no upgrade left to test.
			st, err := store.Open(filepath.Join(dirs[i], "state.db"))
			if err != nil {
				t.Fatal(err)
			}
			_, ok, err := st.LegacySecrets()
			st.Close()
			if err != nil || !ok {
				t.Skipf("%s: an election after the write migrated the record in clear before the node stopped (%v)", n.id.Name, err)
			}
		}
		// What the previous release had issued: no marker.
		plain, err := ca.Issue(n.mat.ident.PublicKey(), pki.NodeIdentity{Name: n.id.Name, ID: n.id.ID})
		if err != nil {
			t.Fatal(err)
		}
		if err := writeFileAtomic(filepath.Join(dirs[i], "tls", "node.crt"), plain); err != nil {
			t.Fatal(err)
		}
		if keyInState {
			if err := os.Remove(filepath.Join(dirs[i], "tls", caKeyFile)); err != nil {
				t.Fatal(err)
			}
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var restarted []*Node
	done := make(chan error, len(cfgs))
	t.Cleanup(func() {
		cancel()
		for range restarted {
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
		for _, n := range restarted {
			n.Close()
		}
	})
	for i, cfg := range cfgs {
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		restarted = append(restarted, n)
		if !n.mat.ident.Node().Voter || !diskCert(t, dirs[i]).Voter {
			t.Errorf("%s has no voter certificate before Raft runs", cfg.Name)
		}
	}
	for _, n := range restarted {
		go func() { done <- n.Run(ctx) }()
	}
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	if err := restarted[0].WaitLeader(wctx); err != nil {
		t.Fatalf("no leader after the upgrade: %v", err)
	}
}

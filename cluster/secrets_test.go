package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/store"
)

// legacyDataDir makes a data dir as the previous release bootstrapped it:
// its bootstrap.json holds the CA's key and the join secret in clear, and
// there is no ca.key. It returns that record.
func legacyDataDir(t *testing.T, dir, name string) store.LegacySecrets {
	t.Helper()
	id, _, err := loadIdentity(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bootstrapMaterial(dir, id); err != nil {
		t.Fatal(err)
	}
	if err := writeIdentity(dir, id); err != nil {
		t.Fatal(err)
	}
	tls := tlsDir(dir)
	keyPEM, err := os.ReadFile(filepath.Join(tls, caKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(tls, "ca.crt"))
	// That release knew no voter marker.
	ca, err := pki.ParseCA(caPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	nodeKey, _ := os.ReadFile(filepath.Join(tls, "node.key"))
	key, err := pki.ParseKey(nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := ca.Issue(&key.PublicKey, pki.NodeIdentity{Name: id.Name, ID: id.ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(filepath.Join(tls, "node.crt"), plain); err != nil {
		t.Fatal(err)
	}
	var bs bootstrapState
	data, _ := os.ReadFile(filepath.Join(tls, bootstrapFile))
	if err := json.Unmarshal(data, &bs); err != nil || bs.Sealed == nil {
		t.Fatalf("bootstrap.json: %v", err)
	}
	legacy := store.LegacySecrets{CACert: caPEM, CAKey: keyPEM, JoinSecret: pki.NewSecret(), AdminKeys: bs.Sealed.AdminKeys}
	old, _ := json.Marshal(map[string]any{"cluster_id": bs.ClusterID, "secrets": legacy})
	if err := os.WriteFile(filepath.Join(tls, bootstrapFile), old, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(tls, caKeyFile)); err != nil {
		t.Fatal(err)
	}
	return legacy
}

// The leader of a cluster whose state holds the previous release's record
// in clear (committed through Raft with the old command) keeps the CA key
// in its own ca.key and commits the sealed record, which deletes the old
// one; the old token still admits nodes, and the voters that join fetch
// the key.
func TestMigrateSecretsInClear(t *testing.T) {
	adir := t.TempDir()
	legacy := legacyDataDir(t, adir, "a")
	a, _ := startNode(t, adir, "a")

	// The record is gone from the state, and its entry from the log,
	// compacted into a snapshot that holds the sealed record only; the
	// leader, holding the key, gave itself the voter marker.
	testutil.WaitFor(t, 10*time.Second, func() error {
		if !a.mat.ident.Node().Voter {
			return fmt.Errorf("the leader has no voter certificate")
		}
		if _, ok, err := a.store.LegacySecrets(); err != nil || ok {
			return fmt.Errorf("the record in clear is still in the state (%v)", err)
		}
		if walHolds(t, a, store.CmdPutSecrets) {
			return fmt.Errorf("the leader's log still holds the old record's entry")
		}
		return nil
	})
	key, err := os.ReadFile(filepath.Join(adir, "tls", caKeyFile))
	if err != nil || !bytes.Equal(key, legacy.CAKey) {
		t.Fatalf("the leader's ca.key after the migration: %v", err)
	}
	tokText, err := a.JoinToken()
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := pki.ParseToken(tokText)
	if !bytes.Equal(tok.Secret, legacy.JoinSecret) {
		t.Fatal("the migration changed the join secret")
	}
	sec, ok, err := a.store.Secrets()
	if err != nil || !ok || bytes.Contains(sec.SealedJoinSecret, legacy.JoinSecret) {
		t.Fatalf("sealed record: %+v, %v, %v", sec, ok, err)
	}

	var joined []*Node
	for _, name := range []string{"b", "c"} {
		n, _ := startNodeWith(t, t.TempDir(), name, func(c *Config) { c.Join = tokText })
		joined = append(joined, n)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		for _, n := range joined {
			if n.cakey.get() == nil {
				return fmt.Errorf("%s has no CA key yet", n.id.Name)
			}
			if !n.mat.ident.Node().Voter {
				return fmt.Errorf("%s has no voter certificate yet", n.id.Name)
			}
			if _, ok, _ := n.store.LegacySecrets(); ok {
				return fmt.Errorf("%s holds the record in clear", n.id.Name)
			}
		}
		return nil
	})
	// The nodes that joined after the migration never received the old
	// entry: the leader compacted its log into a snapshot.
	for _, n := range joined {
		if walHolds(t, n, store.CmdPutSecrets) {
			t.Errorf("%s received the old record's log entry", n.id.Name)
		}
	}
}

// walHolds reports whether n's Raft log holds a command of type typ.
func walHolds(t *testing.T, n *Node, typ store.CommandType) bool {
	t.Helper()
	p := n.raft
	p.mu.Lock()
	defer p.mu.Unlock()
	last, err := p.wal.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	for i := uint64(1); i <= last; i++ {
		if p.wal.GetLog(i, &l) == nil && l.Type == raft.LogCommand && len(l.Data) > 0 && store.CommandType(l.Data[0]) == typ {
			return true
		}
	}
	return false
}

// The CA key goes to a voter only: a non-voter's certificate, though the
// CA signed it, is refused the key, and the non-voter neither holds it nor
// admits joins.
func TestCAKeyOnlyForVoters(t *testing.T) {
	oneVoter := func(c *Config) { c.Voters = 1 }
	a, _ := startNodeWith(t, t.TempDir(), "a", oneVoter)
	tok, err := a.JoinToken()
	if err != nil {
		t.Fatal(err)
	}
	bdir := t.TempDir()
	b, _ := startNodeWith(t, bdir, "b", func(c *Config) { oneVoter(c); c.Join = tok })
	testutil.WaitFor(t, 15*time.Second, func() error {
		cf := b.raft.r().GetConfiguration()
		if err := cf.Error(); err != nil {
			return err
		}
		for _, s := range cf.Configuration().Servers {
			if string(s.ID) == b.id.ID && s.Suffrage == raft.Nonvoter {
				return nil
			}
		}
		return fmt.Errorf("b is no non-voter yet: %+v", cf.Configuration().Servers)
	})
	addr := raftAddr(a.id.ID, fmt.Sprintf("127.0.0.1:%d", a.cfg.Port))
	ctx := context.Background()
	ans, err := b.caKeys.askCAKey(ctx, addr)
	if err != nil || ans.Refused == "" || len(ans.Key) != 0 {
		t.Fatalf("a non-voter asked for the CA key: refused %q, %d key bytes, %v", ans.Refused, len(ans.Key), err)
	}
	ans, err = a.caKeys.askCAKey(ctx, addr)
	if err != nil || !bytes.Equal(ans.Key, a.cakey.get().KeyPEM()) {
		t.Fatalf("a voter asked for the CA key: refused %q, %v", ans.Refused, err)
	}
	if b.cakey.get() != nil {
		t.Error("the non-voter holds the CA key")
	}
	if _, err := os.Stat(filepath.Join(bdir, "tls", caKeyFile)); err == nil {
		t.Error("the non-voter has a ca.key")
	}
	if _, err := b.JoinToken(); err == nil || !strings.Contains(err.Error(), "admin credential") {
		t.Errorf("join token on the non-voter: %v", err)
	}
}

package cluster

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/store"
)

// memCAKey keeps the CA's key in memory, checked against its certificate.
type memCAKey struct {
	certPEM []byte
	ca      *pki.CA
}

func (k *memCAKey) get() *pki.CA { return k.ca }
func (k *memCAKey) put(keyPEM []byte) error {
	ca, err := pki.ParseCA(k.certPEM, keyPEM)
	if err != nil {
		return err
	}
	k.ca = ca
	return nil
}

// The term's records alone, on a lone real Raft over a real state file:
// a previous release's bootstrap.json is committed as it was (id and
// secrets in clear) and goes; the move out of the clear then keeps the
// CA's key on this node and commits the sealed record in place of the
// old one; a second term finds nothing left to do.
func TestClusterRecordsAlone(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := startStoreRaft(t, st)
	ca, err := pki.NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	pending := filepath.Join(tlsDir(dataDir), bootstrapFile)
	bs, _ := json.Marshal(bootstrapState{ClusterID: "c1", Legacy: &store.LegacySecrets{CACert: ca.CertPEM(), CAKey: ca.KeyPEM(),
		JoinSecret: []byte("join me"), AdminKeys: [][]byte{[]byte("admin")}}})
	if err := os.MkdirAll(filepath.Dir(pending), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pending, bs, 0o600); err != nil {
		t.Fatal(err)
	}
	key := &memCAKey{certPEM: ca.CertPEM()}
	w := newWrites("a", fixedRaft{r}, nil, okDisk{}, okDisk{})
	rec := newClusterRecords(dataDir, st, w, key, fixedRaft{r}, testutil.Logger(t))

	if err := rec.writeBootstrap(); err != nil {
		t.Fatal(err)
	}
	if id, _ := st.ClusterID(); id != "c1" {
		t.Errorf("cluster id %q, want c1", id)
	}
	if _, ok, _ := st.LegacySecrets(); !ok {
		t.Error("the previous release's secrets were not committed")
	}
	if _, err := os.Stat(pending); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is left once committed: %v", bootstrapFile, err)
	}

	if err := rec.migrateSecrets(testutil.Logger(t)); err != nil {
		t.Fatal(err)
	}
	if key.get() == nil {
		t.Error("the CA's key is not kept on the leader")
	}
	if _, ok, _ := st.LegacySecrets(); ok {
		t.Error("the secrets in clear are still in the state")
	}
	sec, ok, err := st.Secrets()
	if err != nil || !ok {
		t.Fatalf("sealed secrets: %v, %v", ok, err)
	}
	if secret, err := ca.OpenSecret(sec.SealedJoinSecret); err != nil || string(secret) != "join me" {
		t.Errorf("sealed join secret opens to %q, %v", secret, err)
	}

	index := r.LastIndex()
	if err := rec.writeBootstrap(); err != nil {
		t.Fatal(err)
	}
	if err := rec.migrateSecrets(testutil.Logger(t)); err != nil {
		t.Fatal(err)
	}
	if r.LastIndex() != index {
		t.Errorf("a second term wrote again (log %d -> %d)", index, r.LastIndex())
	}
}

package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/store"
)

// legacyState is the replicated state of a cluster upgraded from the
// release that kept the CA key in clear; sec nil: one that never did.
type legacyState struct{ sec *store.LegacySecrets }

func (l legacyState) LegacySecrets() (store.LegacySecrets, bool, error) {
	if l.sec == nil {
		return store.LegacySecrets{}, false, nil
	}
	return *l.sec, true, nil
}

// The voter certificate part alone, on a bootstrapped node's real
// material in a temporary data dir: with the CA key it issues the
// certificate of the role asked for, to memory and disk alike; without
// it a voter waits and a demoted node keeps its marker; a voter of an
// upgraded cluster takes the key from the replicated state.
func TestVoterCertsAlone(t *testing.T) {
	dir := t.TempDir()
	mat, err := bootstrapMaterial(dir, identity{Name: "a", ID: "aid"})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := newCAKeeper(dir, mat.ident.CA)
	if err != nil {
		t.Fatal(err)
	}
	certs := newVoterCerts(mat.ident, keys, legacyState{}, dir, testutil.Logger(t))
	role := func() (mem, disk bool) { return mat.ident.Node().Voter, diskCert(t, dir).Voter }
	if mem, disk := role(); !mem || !disk {
		t.Fatalf("bootstrapped: voter certificate in memory %v, on disk %v", mem, disk)
	}

	if err := certs.settleVoterCert(false); err != nil {
		t.Fatal(err)
	}
	if mem, disk := role(); mem || disk {
		t.Fatalf("demoted with the key: voter certificate in memory %v, on disk %v", mem, disk)
	}
	if n := mat.ident.Node(); n.Name != "a" || n.ID != "aid" {
		t.Fatalf("the plain certificate names %s/%s", n.Name, n.ID)
	}
	if err := certs.settleVoterCert(true); err != nil {
		t.Fatal(err)
	}
	if mem, disk := role(); !mem || !disk {
		t.Fatalf("promoted with the key: voter certificate in memory %v, on disk %v", mem, disk)
	}

	caKeyPEM := keys.get().KeyPEM()
	if err := keys.drop(); err != nil {
		t.Fatal(err)
	}
	if err := certs.settleVoterCert(false); err != nil {
		t.Fatalf("demoted without the key: %v", err)
	}
	if mem, disk := role(); !mem || !disk {
		t.Fatalf("demoted without the key: the marker went (memory %v, disk %v) with nothing to issue a plain one", mem, disk)
	}

	// A plain node made voter without the key waits for it.
	if err := keys.put(caKeyPEM); err != nil {
		t.Fatal(err)
	}
	if err := certs.settleVoterCert(false); err != nil {
		t.Fatal(err)
	}
	if err := keys.drop(); err != nil {
		t.Fatal(err)
	}
	if err := certs.settleVoterCert(true); err == nil || !strings.Contains(err.Error(), "waits for the CA key") {
		t.Fatalf("promoted without the key: %v, want it to wait for the key", err)
	}
	certs.startAsVoter()
	if mem, disk := role(); mem || disk {
		t.Fatalf("started as voter without any key: voter certificate in memory %v, on disk %v", mem, disk)
	}

	// An upgraded cluster's voter takes the key from the replicated state,
	// unless it is another CA's.
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	newVoterCerts(mat.ident, keys, legacyState{&store.LegacySecrets{CAKey: other.KeyPEM()}}, dir, testutil.Logger(t)).startAsVoter()
	if keys.get() != nil || mat.ident.Node().Voter {
		t.Fatal("took another CA's key from the replicated state")
	}
	newVoterCerts(mat.ident, keys, legacyState{&store.LegacySecrets{CAKey: caKeyPEM}}, dir, testutil.Logger(t)).startAsVoter()
	if keys.get() == nil {
		t.Fatal("an upgraded cluster's voter did not keep the replicated CA key")
	}
	if _, err := os.Stat(filepath.Join(tlsDir(dir), caKeyFile)); err != nil {
		t.Fatalf("the replicated CA key was not written: %v", err)
	}
	if mem, disk := role(); !mem || !disk {
		t.Fatalf("upgraded voter: voter certificate in memory %v, on disk %v", mem, disk)
	}
}

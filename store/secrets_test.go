package store

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
)

// oldPutSecrets is a log entry exactly as the previous release wrote it:
// type 7, the CA's key and the join secret in clear.
const oldPutSecrets = "\x07" + `{"secrets":{"ca_cert":"Q0VSVA==","ca_key":"S0VZLUlOLUNMRUFS","join_secret":"Sk9JTi1TRUNSRVQ=","admin_keys":["QURNSU4="]}}`

// The previous release's record is still applied from old logs and carried
// by snapshots, and the sealed record that replaces it deletes it from the
// state, so that no replica keeps the CA key or the join secret in clear.
func TestLegacySecretsReplaced(t *testing.T) {
	s := openTest(t)
	apply(t, s, 1, Bootstrap{ClusterID: "c"})
	if res := s.FSM().Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: []byte(oldPutSecrets)}); res != nil {
		t.Fatalf("old PutSecrets: %v", res)
	}
	legacy, ok, err := s.LegacySecrets()
	if err != nil || !ok {
		t.Fatalf("legacy record after the old command: %v, %v", ok, err)
	}
	want := LegacySecrets{CACert: []byte("CERT"), CAKey: []byte("KEY-IN-CLEAR"), JoinSecret: []byte("JOIN-SECRET"), AdminKeys: [][]byte{[]byte("ADMIN")}}
	if diff := cmp.Diff(want, legacy); diff != "" {
		t.Fatalf("legacy record (-want +got):\n%s", diff)
	}
	if _, ok, _ := s.Secrets(); ok {
		t.Fatal("a sealed record before any was written")
	}

	// A replica restored from a snapshot taken now keeps the record for
	// the leader to replace.
	follower := openTest(t)
	snapshotInto(t, s, follower)
	if _, ok, _ := follower.LegacySecrets(); !ok {
		t.Fatal("a snapshot lost the previous release's record")
	}

	sealed := Secrets{SealedJoinSecret: []byte("SEALED"), AdminKeys: legacy.AdminKeys}
	for _, st := range []*Store{s, follower} {
		if res := apply(t, st, 3, PutSealedSecrets{Secrets: sealed}); res != nil {
			t.Fatalf("PutSealedSecrets: %v", res)
		}
		if _, ok, _ := st.LegacySecrets(); ok {
			t.Error("the record in clear survived the sealed one")
		}
		got, ok, err := st.Secrets()
		if err != nil || !ok {
			t.Fatalf("sealed record: %v, %v", ok, err)
		}
		if diff := cmp.Diff(sealed, got); diff != "" {
			t.Errorf("sealed record (-want +got):\n%s", diff)
		}
	}
	snap := snapshotInto(t, s, openTest(t))
	for _, clear := range []string{"KEY-IN-CLEAR", "JOIN-SECRET"} {
		enc := base64.StdEncoding.EncodeToString([]byte(clear))
		if bytes.Contains(snap, []byte(clear)) || bytes.Contains(snap, []byte(enc)) {
			t.Errorf("a snapshot after the migration holds %s", clear)
		}
	}
}

// A snapshot of the previous release (its secrets under "secrets") restores
// the record for the leader to replace.
func TestRestoreOldSnapshot(t *testing.T) {
	old := `{"format":"shoal-state-v1","cluster_id":"c","index":7,"apps":null,"allocs":null,"nodes":null,` +
		`"secrets":{"ca_cert":"Q0VSVA==","ca_key":"S0VZLUlOLUNMRUFS","join_secret":"Sk9JTi1TRUNSRVQ=","admin_keys":["QURNSU4="]}}`
	s := openTest(t)
	if err := s.FSM().Restore(nopCloser{bytes.NewReader([]byte(old))}); err != nil {
		t.Fatal(err)
	}
	legacy, ok, err := s.LegacySecrets()
	if err != nil || !ok || string(legacy.CAKey) != "KEY-IN-CLEAR" {
		t.Fatalf("legacy record after an old snapshot: %+v, %v, %v", legacy, ok, err)
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

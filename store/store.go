// Package store owns shoal's desired state on disk: one bbolt file per node
// that is the Raft FSM (apps and the versions of them allocations still
// name, allocations, the node registry) plus a few node-local values.
// Reads are typed; writes happen only through Raft log entries applied by
// the FSM, so every node's file converges to the same content. The FSM
// judges nothing (see fsm.Apply): what is acceptable is decided where
// writes enter, before a command is encoded.
//
// Bucket tree (schema version 2, meta/schema; migrations.go):
//
//	meta/
//	  applied   uint64 big-endian: index of the last applied log entry
//	  cluster   cluster id (set by the bootstrap entry)
//	  schema    uint64 big-endian: on-disk format version (schemaVersion)
//	  sealed-secrets  Secrets as JSON: the join secret sealed under the
//	            CA's key (only voters hold that key), admitted admin keys
//	  secrets   LegacySecrets as JSON, from the previous release (the CA's
//	            key and the join secret in clear): the first leader of this
//	            release replaces it with sealed-secrets, which deletes it
//	  revoked   JSON list of node ids refused for good
//	apps/
//	  <name>    api.App as JSON; Version is the log index that last changed it
//	specs/      (schema 2)
//	  <app>/<version %020d>  api.App as JSON: an older version that an
//	            allocation still names (specs.go)
//	allocs/
//	  <app>/<index %06d>  api.Allocation as JSON
//	nodes/
//	  <name>    NodeRecord as JSON
//	local/      this node's own records, not replicated (see local.go)
//
// Basics: Open a file (it is migrated to this release's schema), hand
// FSM() to raft.NewRaft, read with Apps, App, Spec, Allocations, Nodes;
// wait for changes with Changed or WaitIndex.
//
// Caveats: the FSM skips entries at or below the stored applied index, so
// Raft may replay its log after a restart without double effects. Watchers
// are told after the bbolt transaction commits, never inside it. A file
// of a newer schema is refused, never written.
package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/shoal-edge/shoal/api"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketMeta   = []byte("meta")
	bucketApps   = []byte("apps")
	bucketAllocs = []byte("allocs")
	bucketNodes  = []byte("nodes")
	bucketSpecs  = []byte("specs")

	keyApplied = []byte("applied")
	keyCluster = []byte("cluster")
	keySchema  = []byte("schema")
	keySecrets = []byte("sealed-secrets")
	keyLegacy  = []byte("secrets")
	keyRevoked = []byte("revoked")
)

// Secrets is the cluster's trust record that every replica holds: the join
// secret sealed under a key derived from the CA's private key, which only
// voters keep (pki.CA.SealSecret), and the admitted admin keys (raw
// Ed25519 public keys).
type Secrets struct {
	SealedJoinSecret []byte   `json:"sealed_join_secret"`
	AdminKeys        [][]byte `json:"admin_keys"`
}

// LegacySecrets is the previous release's record, which put the CA's key
// and the join secret in clear on every replica. It is still read from old
// logs, snapshots and state files, only to be replaced (see Secrets).
type LegacySecrets struct {
	CACert     []byte   `json:"ca_cert"`
	CAKey      []byte   `json:"ca_key"`
	JoinSecret []byte   `json:"join_secret"`
	AdminKeys  [][]byte `json:"admin_keys"`
}

// NodeRecord is a node as the Raft registry knows it: identity and what an
// operator set. Liveness comes from gossip and is not stored.
//
// A record without an ID is no node: it holds the labels and cordon that a
// backup restored for a node of that name that has not joined (yet)
// (RestoreBackup); the node takes them over when it registers. Nodes and
// State.Nodes leave such records out, so that nothing lists, schedules on
// or forgets a node that is not there.
type NodeRecord struct {
	Name    string `json:"name"`
	ID      string `json:"id"`
	Address string `json:"address"`
	// Port and GossipPort are where the node listens; with Address, how
	// a restarted node finds the others again.
	Port       int               `json:"port,omitempty"`
	GossipPort int               `json:"gossip_port,omitempty"`
	Arch       string            `json:"arch"`
	OS         string            `json:"os"`
	Labels     map[string]string `json:"labels,omitempty"`
	Cordoned   bool              `json:"cordoned,omitempty"`
}

// Store is an open state file.
type Store struct {
	db         *bolt.DB
	schemaFrom uint64

	mu      sync.Mutex // guards following
	changed chan struct{}
	applied uint64
	revoked revokedSet
}

// revokedSet is meta/revoked decoded, as of the commit that made changed
// the channel at: the cluster port asks Revoked on every connection, node
// call and dial, and the list changes seldom.
type revokedSet struct {
	at  chan struct{} // Store.changed when read: stale once that closes
	ids map[string]bool
}

// Open opens or creates the state file at path and migrates it to this
// release's schema (migrations.go).
func Open(path string) (*Store, error) {
	if err := checkSize(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: time.Second,
		// The freelist is rebuilt on open instead of rewritten on every
		// commit: fewer pages written per apply on flash.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open state %s: locked by another shoal process", path)
		}
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	s := &Store{db: db, changed: make(chan struct{})}
	if err := db.Update(func(tx *bolt.Tx) error {
		var err error
		if s.schemaFrom, err = migrate(tx); err != nil {
			return err
		}
		s.applied = getU64(tx.Bucket(bucketMeta).Get(keyApplied))
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	return s, nil
}

// Schema returns the schema version the file was at when opened (0: it
// was new) and the one it is at now.
func (s *Store) Schema() (opened, now uint64) { return s.schemaFrom, schemaVersion }

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Path is the file's location.
func (s *Store) Path() string { return s.db.Path() }

// AppliedIndex is the index of the last Raft entry in the file.
func (s *Store) AppliedIndex() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

// Changed returns a channel closed at the next commit.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// WaitIndex returns once the file holds the entry at index, or ctx ends.
func (s *Store) WaitIndex(ctx context.Context, index uint64) error {
	for {
		s.mu.Lock()
		applied, ch := s.applied, s.changed
		s.mu.Unlock()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (at %d): %w", index, applied, ctx.Err())
		}
	}
}

func (s *Store) notify(applied uint64) {
	s.mu.Lock()
	s.applied = applied
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// ClusterID is the id written by the bootstrap entry, or "".
func (s *Store) ClusterID() (string, error) {
	var id string
	err := s.db.View(func(tx *bolt.Tx) error {
		id = string(tx.Bucket(bucketMeta).Get(keyCluster))
		return nil
	})
	return id, err
}

// Secrets returns the cluster's trust record; ok is false before the first
// leader has written it.
func (s *Store) Secrets() (sec Secrets, ok bool, err error) {
	ok, err = s.getMeta(keySecrets, &sec)
	return sec, ok, err
}

// LegacySecrets returns the previous release's record, if the state still
// holds it.
func (s *Store) LegacySecrets() (sec LegacySecrets, ok bool, err error) {
	ok, err = s.getMeta(keyLegacy, &sec)
	return sec, ok, err
}

func (s *Store) getMeta(key []byte, v any) (ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketMeta).Get(key)
		if data == nil {
			return nil
		}
		ok = true
		if err := json.Unmarshal(data, v); err != nil {
			return fmt.Errorf("decode meta/%s: %w", key, err)
		}
		return nil
	})
	return ok, err
}

// Reset drops the replicated state (apps, allocations, nodes, the cluster's
// id, secrets and revoked ids, the applied index) and keeps the node-local
// records: for a node that rejoins its cluster with no Raft state.
func (s *Store) Reset() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := emptyReplicated(tx); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		for _, k := range [][]byte{keyApplied, keyCluster, keySecrets, keyLegacy, keyRevoked} {
			if err := meta.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reset state: %w", err)
	}
	s.notify(0)
	return nil
}

// emptyReplicated empties the buckets of replicated state (apps, their
// kept versions, allocations, nodes), for a reset or a snapshot restore.
func emptyReplicated(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketApps, bucketSpecs, bucketAllocs, bucketNodes} {
		if err := tx.DeleteBucket(name); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	return nil
}

// Revoked reports whether a node id was refused for good. It decodes the
// list once per change of the state, not once per call.
func (s *Store) Revoked(id string) bool {
	s.mu.Lock()
	set, at := s.revoked, s.changed
	s.mu.Unlock()
	if set.at != at {
		set = s.loadRevoked(at)
	}
	return set.ids[id]
}

// loadRevoked reads the list as of at or later: at is taken before the
// read, so a commit the read misses closes at, and the next call reads
// again.
func (s *Store) loadRevoked(at chan struct{}) revokedSet {
	var ids []string
	s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyRevoked); v != nil {
			return json.Unmarshal(v, &ids)
		}
		return nil
	})
	set := revokedSet{at: at, ids: make(map[string]bool, len(ids))}
	for _, id := range ids {
		set.ids[id] = true
	}
	s.mu.Lock()
	if s.changed == at {
		s.revoked = set
	}
	s.mu.Unlock()
	return set
}

// Apps lists the apps by name.
func (s *Store) Apps() ([]api.App, error) {
	return list[api.App](s, bucketApps)
}

// App returns one app or an error wrapping api.ErrNotFound.
func (s *Store) App(name string) (api.App, error) {
	var a api.App
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketApps).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("app %q: %w", name, api.ErrNotFound)
		}
		return json.Unmarshal(v, &a)
	})
	return a, err
}

// Allocations lists every allocation ordered by app and index.
func (s *Store) Allocations() ([]api.Allocation, error) {
	return list[api.Allocation](s, bucketAllocs)
}

// Joined says whether the record is a node's, rather than settings a
// backup restored for a node that has not joined.
func (r NodeRecord) Joined() bool { return r.ID != "" }

// Nodes lists the node registry by name: the nodes that joined.
func (s *Store) Nodes() ([]NodeRecord, error) {
	recs, err := list[NodeRecord](s, bucketNodes)
	nodes, _ := splitJoined(recs)
	return nodes, err
}

// State is a consistent read of apps, allocations and nodes.
type State struct {
	Index  uint64
	Apps   []api.App
	Allocs []api.Allocation
	Nodes  []NodeRecord // the nodes that joined
	// Waiting are node settings a backup restored for names no node has
	// joined under yet: part of the replicated state, but no node.
	Waiting []NodeRecord
	// Specs are the older versions of apps that allocations still name,
	// by app and version.
	Specs []api.App
}

// Records are every node record as stored: the nodes', then the settings
// waiting for a node (a new slice: it never writes into Nodes).
func (st State) Records() []NodeRecord {
	return append(slices.Clip(st.Nodes), st.Waiting...)
}

// splitJoined separates nodes' records from settings waiting for a node.
func splitJoined(recs []NodeRecord) (nodes, waiting []NodeRecord) {
	for _, r := range recs {
		if r.Joined() {
			nodes = append(nodes, r)
		} else {
			waiting = append(waiting, r)
		}
	}
	return nodes, waiting
}

// Snapshot reads the whole desired state in one transaction.
func (s *Store) Snapshot() (State, error) {
	var st State
	err := s.db.View(func(tx *bolt.Tx) error {
		st.Index = getU64(tx.Bucket(bucketMeta).Get(keyApplied))
		var err error
		if st.Apps, err = decodeAll[api.App](tx, bucketApps); err != nil {
			return err
		}
		if st.Allocs, err = decodeAll[api.Allocation](tx, bucketAllocs); err != nil {
			return err
		}
		recs, err := decodeAll[NodeRecord](tx, bucketNodes)
		if err != nil {
			return err
		}
		st.Nodes, st.Waiting = splitJoined(recs)
		st.Specs, err = decodeAll[api.App](tx, bucketSpecs)
		return err
	})
	return st, err
}

func list[T any](s *Store, bucket []byte) ([]T, error) {
	var out []T
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = decodeAll[T](tx, bucket)
		return err
	})
	return out, err
}

func decodeAll[T any](tx *bolt.Tx, bucket []byte) ([]T, error) {
	var out []T
	err := tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		var x T
		if err := json.Unmarshal(v, &x); err != nil {
			return fmt.Errorf("decode %s/%s: %w", bucket, k, err)
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

func allocKey(app string, index int) []byte {
	return fmt.Appendf(nil, "%s/%06d", app, index)
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

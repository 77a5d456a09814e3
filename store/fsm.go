package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	bolt "go.etcd.io/bbolt"
)

// FSM returns a Raft state machine writing into this store, for one Raft
// instance: raft.NewRaft takes a new one each time (see Stop).
//
// Concurrency: raft calls Apply, Snapshot and Restore from one goroutine;
// readers use their own bbolt read transactions and never block it long.
func (s *Store) FSM() *FSM { return &FSM{s: s, stop: make(chan struct{})} }

// FSM is the Raft state machine of a store.
//
// An entry that the state file cannot take (bbolt fails: a full disk, an
// I/O error) is not skipped, nor taken as applied: Raft holds an entry
// the state machine returned for applied, every later one would be
// written past it, and the replica would differ from the others for
// good. So Apply keeps trying it, a second to 5 s apart, until it is
// written or Stop is called; Raft delivers no later entry meanwhile, and
// the node serves reads of the state it has (Store.Stall says why it is
// behind). After Stop, Apply writes nothing more and Snapshot refuses:
// the file stays at the entry before, and the next Raft of this store
// replays from there.
type FSM struct {
	s *Store
	// Stalled, if set, is told when an entry cannot be written (err set)
	// and when it is written at last (err nil). It runs on Raft's FSM
	// goroutine: it must not block.
	Stalled func(index uint64, err error)

	stop     chan struct{}
	stopOnce sync.Once
	held     uint64 // an entry Apply returned without writing; Raft's FSM goroutine's
}

var _ raft.FSM = (*FSM)(nil)

// Stop ends Apply's tries of an entry the file cannot take, before Raft
// shuts down (whose shutdown waits for Apply). Safe to call more than once.
func (f *FSM) Stop() { f.stopOnce.Do(func() { close(f.stop) }) }

// ErrNotApplied is Apply's response for an entry it did not write because
// the FSM was stopped while the state file could not take it.
var ErrNotApplied = errors.New("store: the entry was not applied: the state file could not take it and Raft is stopping")

// Stall is an entry the state file cannot take (see FSM).
type Stall struct {
	Index uint64
	Err   error
	Since time.Time
}

// Stall says whether the FSM is stuck on an entry the file cannot take.
func (s *Store) Stall() (Stall, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stall == nil {
		return Stall{}, false
	}
	return *s.stall, true
}

func (s *Store) setStall(st *Stall) {
	s.mu.Lock()
	s.stall = st
	s.mu.Unlock()
}

// stallRetry bounds the wait between two tries of an entry the state file
// could not take.
const (
	stallFirstRetry = time.Second
	stallMaxRetry   = 5 * time.Second
)

// Apply runs one log entry in one bbolt transaction. The response is the
// command's result or an error value; a failed command still advances the
// applied index so that every node skips it the same way.
//
// The FSM judges nothing: an entry is a fact the leader committed, and
// every node, whatever its release, must reach the same state from it. A
// newer release with stricter rules that refused an old entry on replay
// would diverge from the replicas that took it. So whether a spec, a
// label or a count is acceptable is decided where writes enter (the API
// backends in cluster, before Encode), and Apply refuses only:
//   - an entry that does not decode (empty, unknown type, malformed JSON),
//     alike on every node;
//   - a command whose precondition on the replicated state does not hold,
//     as its type's doc comment states (DeleteApps of an unknown app,
//     Scale of an unknown or global app, SetLabels and SetCordon of an
//     unknown node, RestoreBackup into a cluster that has apps): these
//     read only the state the log built, so every node decides alike,
//     and they are part of the command's meaning, fixed with its type
//     byte. They cannot be judged at the edge, which reads a state that
//     may change before the entry commits.
//
// A file that cannot take the entry is not a refusal: see FSM.
func (f *FSM) Apply(l *raft.Log) any {
	s := f.s
	if l.Type != raft.LogCommand {
		return nil
	}
	if f.held != 0 {
		return ErrNotApplied // never written past an entry not written
	}
	if l.Index <= s.AppliedIndex() {
		return nil // replayed after a restart: already in the file
	}
	delay := stallFirstRetry
	var stalled error
	for {
		resp, err := s.write(l)
		if err == nil {
			if stalled != nil {
				s.setStall(nil)
				if f.Stalled != nil {
					f.Stalled(l.Index, nil)
				}
			}
			s.notify(l.Index)
			return resp
		}
		if stalled == nil || err.Error() != stalled.Error() {
			s.setStall(&Stall{Index: l.Index, Err: err, Since: time.Now()})
			if f.Stalled != nil {
				f.Stalled(l.Index, err)
			}
		}
		stalled = err
		select {
		case <-f.stop:
			f.held = l.Index
			return ErrNotApplied
		case <-time.After(delay):
		}
		delay = min(2*delay, stallMaxRetry)
	}
}

// write applies l in the file: the command's writes, or, for a command
// that fails, only the applied index. resp is the command's result or its
// error; err says the file could not be written.
func (s *Store) write(l *raft.Log) (resp any, err error) {
	var cmdErr error
	err = s.db.Update(func(tx *bolt.Tx) error {
		cmd, err := decode(l.Data)
		if err == nil {
			resp, err = applyCmd(tx, l.Index, cmd)
		}
		cmdErr = err
		return err // a failed command rolls back all of its writes
	})
	if cmdErr != nil {
		resp = cmdErr
		err = s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyApplied, u64(l.Index))
		})
	}
	if err != nil {
		return nil, fmt.Errorf("write log entry %d to state file %s: %w", l.Index, s.Path(), err)
	}
	return resp, nil
}

func applyCmd(tx *bolt.Tx, index uint64, cmd any) (any, error) {
	var resp any
	var err error
	switch c := cmd.(type) {
	case *Bootstrap:
		err = tx.Bucket(bucketMeta).Put(keyCluster, []byte(c.ClusterID))
	case *PutApps:
		resp, err = putApps(tx, index, c.Apps)
	case *DeleteApps:
		err = deleteApps(tx, c.Names)
	case *SetAllocs:
		err = setAllocs(tx, c)
	case *PutNode:
		err = putJSON(tx.Bucket(bucketNodes), []byte(c.Node.Name), c.Node)
	case *NodeFacts:
		err = nodeFacts(tx, c.Node)
	case *SetLabels:
		err = updateNode(tx, c.Node, func(r *NodeRecord) {
			if r.Labels == nil {
				r.Labels = map[string]string{}
			}
			maps.Copy(r.Labels, c.Set)
			for _, k := range c.Remove {
				delete(r.Labels, k)
			}
		})
	case *SetCordon:
		err = updateNode(tx, c.Node, func(r *NodeRecord) { r.Cordoned = c.Cordoned })
	case *Scale:
		resp, err = scale(tx, index, c.Replicas)
	case *Revoke:
		err = revoke(tx, c.ID)
	case *RestoreBackup:
		err = restoreBackup(tx, index, c.Backup)
	case *PutSecrets:
		err = putJSON(tx.Bucket(bucketMeta), keyLegacy, c.Secrets)
	case *PutSealedSecrets:
		// The record in clear goes from every replica with it.
		if err = tx.Bucket(bucketMeta).Delete(keyLegacy); err == nil {
			err = putJSON(tx.Bucket(bucketMeta), keySecrets, c.Secrets)
		}
	case *DeleteNodes:
		for _, n := range c.Names {
			if err = tx.Bucket(bucketNodes).Delete([]byte(n)); err != nil {
				break
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if err := pruneSpecs(tx); err != nil {
		return nil, err
	}
	return resp, tx.Bucket(bucketMeta).Put(keyApplied, u64(index))
}

func putApps(tx *bolt.Tx, index uint64, apps []api.App) ([]api.ApplyResult, error) {
	b := tx.Bucket(bucketApps)
	out := make([]api.ApplyResult, 0, len(apps))
	for _, a := range apps {
		a.Version = 0
		res := api.ApplyResult{Name: a.Name, Version: index, Changed: true}
		if old := b.Get([]byte(a.Name)); old != nil {
			var prev api.App
			if err := json.Unmarshal(old, &prev); err != nil {
				return nil, fmt.Errorf("decode app %q: %w", a.Name, err)
			}
			v := prev.Version
			prev.Version = 0
			switch {
			case sameJSON(prev, a):
				res.Version, res.Changed = v, false
			case sameSpec(prev, a):
				// Only the replica count: the running instances stay as
				// they are (a new version would replace each of them).
				res.Version = v
			default:
				// A new version: instances at the old one keep running
				// it until the scheduler moves them.
				prev.Version = v
				if err := keepSpec(tx, prev); err != nil {
					return nil, err
				}
			}
		}
		a.Version = res.Version
		if res.Changed {
			if err := putJSON(b, []byte(a.Name), a); err != nil {
				return nil, err
			}
		}
		out = append(out, res)
	}
	return out, nil
}

func nodeFacts(tx *bolt.Tx, n NodeRecord) error {
	b := tx.Bucket(bucketNodes)
	if old := b.Get([]byte(n.Name)); old != nil {
		var prev NodeRecord
		if err := json.Unmarshal(old, &prev); err != nil {
			return fmt.Errorf("decode node %q: %w", n.Name, err)
		}
		n.Labels, n.Cordoned = prev.Labels, prev.Cordoned
		// A new node took the name over (the old one is dead: the join
		// refuses a live one's name): the old identity is done.
		if prev.ID != "" && prev.ID != n.ID {
			if err := revoke(tx, prev.ID); err != nil {
				return err
			}
		}
	}
	return putJSON(b, []byte(n.Name), n)
}

func revoke(tx *bolt.Tx, id string) error {
	meta := tx.Bucket(bucketMeta)
	var ids []string
	if v := meta.Get(keyRevoked); v != nil {
		if err := json.Unmarshal(v, &ids); err != nil {
			return fmt.Errorf("decode revoked ids: %w", err)
		}
	}
	if slices.Contains(ids, id) {
		return nil
	}
	return putJSON(meta, keyRevoked, append(ids, id))
}

func updateNode(tx *bolt.Tx, name string, f func(*NodeRecord)) error {
	b := tx.Bucket(bucketNodes)
	old := b.Get([]byte(name))
	if old == nil {
		return fmt.Errorf("node %q: %w", name, api.ErrNotFound)
	}
	var r NodeRecord
	if err := json.Unmarshal(old, &r); err != nil {
		return fmt.Errorf("decode node %q: %w", name, err)
	}
	f(&r)
	return putJSON(b, []byte(name), r)
}

func scale(tx *bolt.Tx, index uint64, replicas map[string]int) ([]api.ApplyResult, error) {
	var apps []api.App
	for _, name := range slices.Sorted(maps.Keys(replicas)) {
		v := tx.Bucket(bucketApps).Get([]byte(name))
		if v == nil {
			return nil, fmt.Errorf("app %q: %w", name, api.ErrNotFound)
		}
		var a api.App
		if err := json.Unmarshal(v, &a); err != nil {
			return nil, fmt.Errorf("decode app %q: %w", name, err)
		}
		if a.Mode == api.ModeGlobal {
			return nil, fmt.Errorf("%w: app %q is global: it runs on every matching node and has no replica count", api.ErrInvalid, name)
		}
		a.Replicas = replicas[name]
		apps = append(apps, a)
	}
	return putApps(tx, index, apps)
}

func deleteApps(tx *bolt.Tx, names []string) error {
	apps, allocs := tx.Bucket(bucketApps), tx.Bucket(bucketAllocs)
	for _, n := range names {
		if apps.Get([]byte(n)) == nil {
			return fmt.Errorf("app %q: %w", n, api.ErrNotFound)
		}
	}
	for _, n := range names {
		if err := apps.Delete([]byte(n)); err != nil {
			return err
		}
		prefix := []byte(n + "/")
		c := allocs.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	return nil
}

func setAllocs(tx *bolt.Tx, c *SetAllocs) error {
	b := tx.Bucket(bucketAllocs)
	for _, k := range c.Delete {
		if err := b.Delete(allocKey(k.App, k.Index)); err != nil {
			return err
		}
	}
	for _, a := range c.Put {
		// The scheduler planned against an older state: an allocation of
		// an app deleted meanwhile must not come back.
		if tx.Bucket(bucketApps).Get([]byte(a.App)) == nil {
			continue
		}
		if err := putJSON(b, allocKey(a.App, a.Index), a); err != nil {
			return err
		}
	}
	return nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// Skip identical values: bbolt would rewrite the page anyway.
	if bytes.Equal(b.Get(key), data) {
		return nil
	}
	return b.Put(key, data)
}

// sameSpec reports whether two apps differ in their replica count at most.
func sameSpec(a, b api.App) bool {
	a.Replicas, b.Replicas = 0, 0
	return sameJSON(a, b)
}

func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// snapshotFile is the portable form of the desired state, used by Raft
// snapshots and by `shoal snapshot save`.
type snapshotFile struct {
	Format    string           `json:"format"`
	ClusterID string           `json:"cluster_id"`
	Index     uint64           `json:"index"`
	Apps      []api.App        `json:"apps"`
	Allocs    []api.Allocation `json:"allocs"`
	Nodes     []NodeRecord     `json:"nodes"`
	// Specs are the older app versions allocations still name; the
	// previous release's snapshots have none.
	Specs   []api.App       `json:"specs,omitempty"`
	Sealed  *Secrets        `json:"sealed_secrets,omitempty"`
	Revoked json.RawMessage `json:"revoked,omitempty"`
	// Legacy is the previous release's record, until the leader has
	// replaced it; that release's snapshots carry it under this name.
	Legacy *LegacySecrets `json:"secrets,omitempty"`
}

const snapshotFormat = "shoal-state-v1"

// Snapshot captures the state in one read transaction; Persist writes it
// from raft's snapshot goroutine without blocking Apply. It refuses once
// Apply returned an entry it did not write: Raft would file the snapshot
// under that entry, which the file does not hold.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	s := f.s
	if f.held != 0 {
		return nil, fmt.Errorf("snapshot: log entry %d is not in the state file: %w", f.held, ErrNotApplied)
	}
	st, err := s.Snapshot()
	if err != nil {
		return nil, err
	}
	id, err := s.ClusterID()
	if err != nil {
		return nil, err
	}
	sf := snapshotFile{Format: snapshotFormat, ClusterID: id, Index: st.Index, Apps: st.Apps, Allocs: st.Allocs, Nodes: st.Records(), Specs: st.Specs}
	if sec, ok, err := s.Secrets(); err != nil {
		return nil, err
	} else if ok {
		sf.Sealed = &sec
	}
	if sec, ok, err := s.LegacySecrets(); err != nil {
		return nil, err
	} else if ok {
		sf.Legacy = &sec
	}
	s.db.View(func(tx *bolt.Tx) error {
		sf.Revoked = bytes.Clone(tx.Bucket(bucketMeta).Get(keyRevoked))
		return nil
	})
	return &fsmSnapshot{sf}, nil
}

type fsmSnapshot struct{ f snapshotFile }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.f); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// SnapshotIndex reads the index of the last command a snapshot holds (the
// state file's applied index when it was taken), which may be below the
// Raft index it is filed under.
func SnapshotIndex(r io.Reader) (uint64, error) {
	var sf struct {
		Format string `json:"format"`
		Index  uint64 `json:"index"`
	}
	if err := json.NewDecoder(r).Decode(&sf); err != nil {
		return 0, fmt.Errorf("read snapshot: %w", err)
	}
	if sf.Format != snapshotFormat {
		return 0, fmt.Errorf("read snapshot: format %q is not %q", sf.Format, snapshotFormat)
	}
	return sf.Index, nil
}

// Restore replaces the whole state with a snapshot's.
func (f *FSM) Restore(r io.ReadCloser) error {
	defer r.Close()
	s := f.s
	var sf snapshotFile
	if err := json.NewDecoder(r).Decode(&sf); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if sf.Format != snapshotFormat {
		return fmt.Errorf("restore snapshot: format %q is not %q", sf.Format, snapshotFormat)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := emptyReplicated(tx); err != nil {
			return err
		}
		for _, a := range sf.Apps {
			if err := putJSON(tx.Bucket(bucketApps), []byte(a.Name), a); err != nil {
				return err
			}
		}
		for _, a := range sf.Specs {
			if err := putJSON(tx.Bucket(bucketSpecs), specKey(a.Name, a.Version), a); err != nil {
				return err
			}
		}
		for _, a := range sf.Allocs {
			if err := putJSON(tx.Bucket(bucketAllocs), allocKey(a.App, a.Index), a); err != nil {
				return err
			}
		}
		for _, n := range sf.Nodes {
			if err := putJSON(tx.Bucket(bucketNodes), []byte(n.Name), n); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		for _, k := range [][]byte{keySecrets, keyLegacy, keyRevoked} {
			if err := meta.Delete(k); err != nil {
				return err
			}
		}
		if len(sf.Revoked) > 0 {
			if err := meta.Put(keyRevoked, sf.Revoked); err != nil {
				return err
			}
		}
		if sf.Sealed != nil {
			if err := putJSON(meta, keySecrets, *sf.Sealed); err != nil {
				return err
			}
		}
		if sf.Legacy != nil {
			if err := putJSON(meta, keyLegacy, *sf.Legacy); err != nil {
				return err
			}
		}
		if err := meta.Put(keyCluster, []byte(sf.ClusterID)); err != nil {
			return err
		}
		return meta.Put(keyApplied, u64(sf.Index))
	})
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.held = 0 // Raft restores only past what it took for applied
	s.setStall(nil)
	s.notify(sf.Index)
	return nil
}

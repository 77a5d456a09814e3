package store

import (
	"encoding/json"
	"fmt"

	"github.com/shoal-edge/shoal/api"
	bolt "go.etcd.io/bbolt"
)

// Node-local state lives in the same file under local/, outside Raft: it is
// this node's own record and never replicated.
//
//	local/
//	  finished/
//	    <app>/<index %06d>  api.InstanceStatus of an instance whose restart
//	                        policy let it end (never, on-failure after 0)
var (
	bucketLocal    = []byte("local")
	bucketFinished = []byte("finished")
)

// Finished returns the final status of an instance that ended for good, if
// it ended at this version.
func (s *Store) Finished(app string, index int, version uint64) (api.InstanceStatus, bool) {
	var st api.InstanceStatus
	found := false
	s.db.View(func(tx *bolt.Tx) error {
		b := localBucket(tx)
		if b == nil {
			return nil
		}
		v := b.Get(allocKey(app, index))
		if v != nil && json.Unmarshal(v, &st) == nil && st.Version == version {
			found = true
		}
		return nil
	})
	return st, found
}

// SetFinished records that an instance ended for good; it is written once
// per such end, so a crash loop costs no flash.
func (s *Store) SetFinished(st api.InstanceStatus, index int) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		l, err := tx.CreateBucketIfNotExists(bucketLocal)
		if err != nil {
			return err
		}
		b, err := l.CreateBucketIfNotExists(bucketFinished)
		if err != nil {
			return err
		}
		if err := putJSON(b, allocKey(st.App, index), st); err != nil {
			return fmt.Errorf("record finished %s: %w", st.Instance, err)
		}
		return nil
	})
}

// ForgetFinished drops the record of an instance (its app was removed,
// changed or moved).
func (s *Store) ForgetFinished(app string, index int) error {
	if _, ok := s.finishedKey(app, index); !ok {
		return nil // nothing to forget: no write
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if b := localBucket(tx); b != nil {
			return b.Delete(allocKey(app, index))
		}
		return nil
	})
}

func (s *Store) finishedKey(app string, index int) ([]byte, bool) {
	found := false
	s.db.View(func(tx *bolt.Tx) error {
		if b := localBucket(tx); b != nil {
			found = b.Get(allocKey(app, index)) != nil
		}
		return nil
	})
	return allocKey(app, index), found
}

func localBucket(tx *bolt.Tx) *bolt.Bucket {
	l := tx.Bucket(bucketLocal)
	if l == nil {
		return nil
	}
	return l.Bucket(bucketFinished)
}

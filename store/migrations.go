package store

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// schemaVersion is the on-disk format this code reads and writes: the
// number of the last migration. A file at a higher number was written by
// a newer shoal and is refused; a file at a lower one is migrated on Open.
const schemaVersion = 2

// migration brings a state file from schema version-1 to version. A
// migration, once released, is never edited or renumbered: state files
// in the field were written by it.
type migration struct {
	version uint64
	name    string
	migrate func(*bolt.Tx) error
}

// migrations run in order, each in the one transaction that opens the
// file, so that a file is at one schema version or the next, never
// between. A new file (no meta/schema key) runs them all.
var migrations = []migration{
	{1, "the first release's buckets: meta, apps, allocs, nodes", createBuckets(bucketMeta, bucketApps, bucketAllocs, bucketNodes)},
	// The previous release kept only an app's current spec; allocations
	// that name an older version found none. From now on the FSM keeps
	// those versions under specs/ (see specs.go). A migrated file has
	// none to keep: the previous release overwrote them.
	{2, "specs: the versions of app specs that allocations still name", createBuckets(bucketSpecs)},
}

func createBuckets(names ...[]byte) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		for _, n := range names {
			if _, err := tx.CreateBucketIfNotExists(n); err != nil {
				return fmt.Errorf("create bucket %s: %w", n, err)
			}
		}
		return nil
	}
}

// NewerSchemaError is returned by Open for a state file written by a newer
// shoal than this one.
type NewerSchemaError struct{ File, Code uint64 }

func (e *NewerSchemaError) Error() string {
	return fmt.Sprintf("state format %d is newer than this shoal understands (%d): upgrade shoal", e.File, e.Code)
}

// migrate brings the file to schemaVersion and returns the version it was
// at (0: a new file, one without a bucket).
//
// Every release wrote meta/schema in the transaction that made the
// file's buckets, so a file with buckets and no readable schema (the key
// gone, a value that is not 8 bytes, or 0) was damaged: read as 0 it
// would be taken for new and migrated from nothing over a state that is
// not. It is refused (*DamagedError), left as it was.
func migrate(tx *bolt.Tx, path string) (from uint64, err error) {
	if empty(tx) {
		from = 0
	} else if from, err = schemaOf(tx); err != nil {
		return 0, &DamagedError{Path: path, Schema: err.Error()}
	}
	if from > schemaVersion {
		return from, &NewerSchemaError{File: from, Code: schemaVersion}
	}
	if from == schemaVersion {
		return from, nil
	}
	for _, m := range migrations {
		if m.version <= from {
			continue
		}
		if err := m.migrate(tx); err != nil {
			return from, fmt.Errorf("migrate state to format %d (%s): %w", m.version, m.name, err)
		}
	}
	return from, tx.Bucket(bucketMeta).Put(keySchema, u64(schemaVersion))
}

// empty says whether the file has no bucket: a file bbolt just made.
func empty(tx *bolt.Tx) bool {
	k, _ := tx.Cursor().First()
	return k == nil
}

// schemaOf reads meta/schema of a file that has buckets.
func schemaOf(tx *bolt.Tx) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, errors.New("it has no meta bucket")
	}
	v := meta.Get(keySchema)
	switch {
	case v == nil:
		return 0, errors.New("its meta/schema key is missing")
	case len(v) != 8:
		return 0, fmt.Errorf("its meta/schema value is %d bytes (%x), not a format number of 8", len(v), v)
	}
	if n := getU64(v); n > 0 {
		return n, nil
	}
	return 0, errors.New("its meta/schema value is 0, which no release wrote")
}

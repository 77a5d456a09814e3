package store

import (
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
// at (0: a new file).
func migrate(tx *bolt.Tx) (from uint64, err error) {
	if meta := tx.Bucket(bucketMeta); meta != nil {
		from = getU64(meta.Get(keySchema))
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

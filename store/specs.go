package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/shoal-edge/shoal/api"
	bolt "go.etcd.io/bbolt"
)

// An allocation names the version of its app it runs, and the agent runs
// exactly that version, not whatever the app's spec is now: while a new
// version rolls out, an instance still at the old one restarts (a crash,
// a reboot) with the old spec under the old label. apps/ holds the current
// version of each app; specs/ holds the older versions that allocations
// still name:
//
//	specs/
//	  <app>/<version %020d>  api.App as JSON, Version set
//
// The FSM keeps the bucket deterministically, from the log alone: a
// command that changes an app's spec moves the version it replaces to
// specs/ if an allocation names it (keepSpec), and after every command the
// versions no allocation names any more are dropped (pruneSpecs).

func specKey(app string, version uint64) []byte {
	return fmt.Appendf(nil, "%s/%020d", app, version)
}

// keepSpec keeps prev, a version about to be replaced in apps/, if an
// allocation still names it.
func keepSpec(tx *bolt.Tx, prev api.App) error {
	if named, err := isNamed(tx, specRef{prev.Name, prev.Version}); err != nil || !named {
		return err
	}
	return putJSON(tx.Bucket(bucketSpecs), specKey(prev.Name, prev.Version), prev)
}

// pruneSpecs drops the kept versions that no allocation names.
func pruneSpecs(tx *bolt.Tx) error {
	specs := tx.Bucket(bucketSpecs)
	if k, _ := specs.Cursor().First(); k == nil {
		return nil // the usual case: the scheduler moved every instance
	}
	var drop [][]byte
	err := specs.ForEach(func(k, v []byte) error {
		ref, ok := parseSpecKey(k)
		named := false
		if ok {
			var err error
			if named, err = isNamed(tx, ref); err != nil {
				return err
			}
		}
		if !named {
			drop = append(drop, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range drop {
		if err := specs.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

type specRef struct {
	app     string
	version uint64
}

func parseSpecKey(k []byte) (specRef, bool) {
	i := bytes.LastIndexByte(k, '/')
	if i < 0 || len(k)-i-1 != 20 {
		return specRef{}, false
	}
	v, err := strconv.ParseUint(string(k[i+1:]), 10, 64)
	return specRef{string(k[:i]), v}, err == nil
}

// isNamed reports whether an allocation names the version: it reads the
// app's allocations only (allocs/<app>/...).
func isNamed(tx *bolt.Tx, ref specRef) (bool, error) {
	prefix := []byte(ref.app + "/")
	c := tx.Bucket(bucketAllocs).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var a api.Allocation
		if err := json.Unmarshal(v, &a); err != nil {
			return false, fmt.Errorf("decode allocs/%s: %w", k, err)
		}
		if a.App == ref.app && a.Version == ref.version {
			return true, nil
		}
	}
	return false, nil
}

// Spec returns the spec of app at version: the current one, or an older
// one an allocation still names. An error wraps api.ErrNotFound when the
// state holds no such version.
func (s *Store) Spec(app string, version uint64) (api.App, error) {
	var a api.App
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketApps).Get([]byte(app)); v != nil {
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode app %q: %w", app, err)
			}
			if a.Version == version {
				return nil
			}
		}
		v := tx.Bucket(bucketSpecs).Get(specKey(app, version))
		if v == nil {
			return fmt.Errorf("app %q version %d: %w", app, version, api.ErrNotFound)
		}
		a = api.App{}
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("decode app %q version %d: %w", app, version, err)
		}
		return nil
	})
	return a, err
}

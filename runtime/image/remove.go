package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Removing names and collecting what no name needs.
//
// Every change under Root happens with s.mu held: Import and Pull commit
// their staged blobs and the index under it, and garbage collection decides
// what is garbage under it. Work that takes long and must not block the
// store (staging downloads, unpacking, deleting a large rootfs) happens
// outside the lock, on paths recorded in s.busy, which collection skips:
//
//   - a staging dir, spool file or half-unpacked rootfs under tmp/ is busy
//     from its creation until its operation ends;
//   - a stored blob that an import in progress found already present, and so
//     did not download again, is busy until that import has committed (after
//     which its new name keeps it alive) or failed.
//
// Garbage is renamed into a fresh tmp/gc-* directory under the lock, which is
// quick, and deleted after the lock is released.

// maxRemoveAttempts bounds how often RemoveUnlessUsed re-asks inUse when the
// names change between asking and removing.
const maxRemoveAttempts = 3

// Remove deletes the name ref (or, for a digest or image ID, every name of
// that image) and then the blobs and unpacked rootfs directories no name
// needs any more. It does not ask whether a container uses the image; see
// RemoveUnlessUsed.
func (s *Store) Remove(ref string) error {
	return s.RemoveUnlessUsed(ref, nil)
}

// RemoveUnlessUsed is Remove that refuses, with an error wrapping ErrInUse,
// to delete an image a container still uses. inUse is asked about the
// image IDs (config digests, "sha256:...", as Image.ID) whose data the
// removal would delete: those left with no name. Removing one of several
// names of an image deletes nothing and so asks nothing, as `docker rmi`
// untags an image in use.
//
// inUse is called without any store lock held, so it may call the store.
// Should the names change between asking and removing, inUse is asked
// again about the new set. A container started after inUse answered is the
// caller's race: start containers and remove images from one goroutine, or
// hold the caller's own lock across both. A nil inUse is Remove.
func (s *Store) RemoveUnlessUsed(ref string, inUse func(imageID string) bool) error {
	if err := s.remove(ref, inUse); err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

func (s *Store) remove(ref string, inUse func(string) bool) error {
	var checked []string
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		next, doomed, err := s.planRemove(ref)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		if inUse == nil || len(doomed) == 0 || (attempt > 0 && slices.Equal(doomed, checked)) {
			err := s.writeIndex(next)
			if err != nil {
				s.mu.Unlock()
				return err
			}
			s.index = next
			trash, release, err := s.sweepLocked(false)
			s.mu.Unlock()
			if _, derr := s.emptyTrash(trash, release); err == nil {
				err = derr
			}
			if err != nil {
				// The name is gone; leftovers only cost space until the
				// next Remove or GC.
				s.log.Warn("image store garbage collection failed", "err", err)
			}
			return nil
		}
		s.mu.Unlock()
		if attempt == maxRemoveAttempts {
			return errors.New("the store's names kept changing while checking which images are in use; try again")
		}
		for _, id := range doomed {
			if inUse(id) {
				return fmt.Errorf("image %s is used by a container: %w", id, ErrInUse)
			}
		}
		checked = doomed
	}
}

// planRemove returns the index without the names ref stands for, and the
// sorted IDs of the images that would be left without a name. s.mu must be
// held.
func (s *Store) planRemove(ref string) (v1.IndexManifest, []string, error) {
	match, err := s.matcherLocked(ref)
	if err != nil {
		return v1.IndexManifest{}, nil, err
	}
	var keep, gone []v1.Descriptor
	for _, d := range s.index.Manifests {
		if match(d) {
			gone = append(gone, d)
		} else {
			keep = append(keep, d)
		}
	}
	if len(gone) == 0 {
		return v1.IndexManifest{}, nil, ErrNotFound
	}
	// An unreadable manifest (a damaged store) must not make its name
	// impossible to remove, so read errors only leave an ID unknown.
	kept := map[v1.Hash]bool{}
	for _, d := range keep {
		if m, err := s.readManifest(d.Digest); err == nil {
			kept[m.Config.Digest] = true
		}
	}
	var doomed []string
	for _, d := range gone {
		m, err := s.readManifest(d.Digest)
		if err != nil || kept[m.Config.Digest] {
			continue
		}
		if id := m.Config.Digest.String(); !slices.Contains(doomed, id) {
			doomed = append(doomed, id)
		}
	}
	slices.Sort(doomed)
	next := s.index
	next.Manifests = keep
	return next, doomed, nil
}

// matcherLocked returns whether an index entry is one of the names ref
// stands for: the name itself, or every name of the image a digest or image
// ID denotes. s.mu must be held.
func (s *Store) matcherLocked(ref string) (func(v1.Descriptor) bool, error) {
	if h, ok := parseDigestRef(ref); ok {
		return func(d v1.Descriptor) bool {
			if d.Digest == h {
				return true
			}
			m, err := s.readManifest(d.Digest)
			return err == nil && m.Config.Digest == h
		}, nil
	}
	canon, err := canonicalRef(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return func(d v1.Descriptor) bool { return d.Annotations[refNameAnnotation] == canon }, nil
}

// RemoveTakes says whether removing ref would take away the name that
// other (an app's image, say) resolves through, so that other would no
// longer resolve to the image it does now. This is what ErrInUse cannot
// see: removing one of two names of an image deletes no data, yet a
// container started later by the removed name finds nothing. It is false
// when other does not resolve.
func (s *Store) RemoveTakes(ref, other string) (bool, error) {
	d, err := s.lookup(other)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	match, err := s.matcherLocked(ref)
	if err != nil {
		return false, err
	}
	return match(d), nil
}

// GC deletes what no name refers to: blobs, unpacked rootfs directories,
// leftovers under tmp/ that no operation in progress owns, and temp files
// of an interrupted index write. It returns the bytes freed (the apparent
// size of the regular files deleted; a hardlinked file counts per link).
//
// GC is safe to run at any time, concurrently with Import, Pull, Rootfs and
// Remove: what they are working on is busy and left alone. Like Remove it
// does not know about containers: a rootfs whose image has no name any more
// is deleted even when a container still runs on it, which RemoveUnlessUsed
// prevents.
func (s *Store) GC() (freed int64, err error) {
	s.mu.Lock()
	trash, release, err := s.sweepLocked(true)
	s.mu.Unlock()
	freed, derr := s.emptyTrash(trash, release)
	if err = errors.Join(err, derr); err != nil {
		return freed, fmt.Errorf("image store gc: %w", err)
	}
	if freed > 0 {
		s.log.Debug("image store gc", "freed", freed)
	}
	return freed, nil
}

// sweepLocked moves every unreferenced, not busy blob and rootfs directory
// (and with withTmp, tmp/ entry and index temp file) into a new trash
// directory under tmp/, which it returns busy, with the function that
// releases it; "" when there was nothing to move. It moves nothing when an
// indexed manifest cannot be read, as it then cannot know what is live.
// s.mu must be held.
func (s *Store) sweepLocked(withTmp bool) (trash string, release func(), err error) {
	live := map[string]bool{}
	for _, d := range s.index.Manifests {
		m, err := s.readManifest(d.Digest)
		if err != nil {
			return "", nil, err
		}
		live[blobRel(d.Digest)] = true
		live[blobRel(m.Config.Digest)] = true
		live["rootfs/"+m.Config.Digest.Hex] = true
		for _, l := range m.Layers {
			live[blobRel(l.Digest)] = true
		}
	}
	var garbage []string
	var errs []error
	collect := func(dir string, keep func(name string) bool) {
		ents, err := os.ReadDir(s.path(dir))
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, e := range ents {
			rel := dir + "/" + e.Name()
			if dir == "." {
				rel = e.Name()
			}
			if !live[rel] && s.busy[rel] == 0 && !keep(e.Name()) {
				garbage = append(garbage, rel)
			}
		}
	}
	keepNone := func(string) bool { return false }
	collect("blobs/sha256", keepNone)
	collect("rootfs", keepNone)
	if withTmp {
		collect("tmp", keepNone)
		// writeFileAtomic's temp files; none is being written while s.mu
		// is held.
		collect(".", func(name string) bool {
			return !strings.HasPrefix(name, ".index.json.tmp-") && !strings.HasPrefix(name, ".oci-layout.tmp-")
		})
	}
	if len(garbage) == 0 {
		return "", nil, errors.Join(errs...)
	}
	trash, release, err = s.tempDirLocked("gc-")
	if err != nil {
		return "", nil, errors.Join(append(errs, err)...)
	}
	for _, rel := range garbage {
		s.log.Debug("image store: removing unreferenced", "path", rel)
		if err := os.Rename(s.path(rel), filepath.Join(trash, strings.ReplaceAll(rel, "/", "_"))); err != nil {
			errs = append(errs, err)
		}
	}
	return trash, release, errors.Join(errs...)
}

// emptyTrash deletes a directory sweepLocked filled, without the store
// lock, and returns the bytes it held.
func (s *Store) emptyTrash(trash string, release func()) (int64, error) {
	if trash == "" {
		return 0, nil
	}
	defer release()
	var size int64
	filepath.WalkDir(trash, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
			}
		}
		return nil
	})
	if err := os.RemoveAll(trash); err != nil {
		return size, fmt.Errorf("delete %s: %w", trash, err)
	}
	return size, nil
}

// blobRel is where the blob h lives, relative to Root.
func blobRel(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// holdLocked marks rel, a path relative to Root, busy. s.mu must be held.
func (s *Store) holdLocked(rel string) { s.busy[rel]++ }

// unholdLocked undoes one holdLocked. s.mu must be held.
func (s *Store) unholdLocked(rel string) {
	if s.busy[rel]--; s.busy[rel] <= 0 {
		delete(s.busy, rel)
	}
}

// tempDir creates a directory under tmp/ that stays busy until release is
// called. release must not be called with s.mu held.
func (s *Store) tempDir(pattern string) (dir string, release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tempDirLocked(pattern)
}

func (s *Store) tempDirLocked(pattern string) (string, func(), error) {
	dir, err := os.MkdirTemp(s.path("tmp"), pattern)
	if err != nil {
		return "", nil, err
	}
	return dir, s.holdTmpLocked(dir), nil
}

// tempFile is tempDir for a file.
func (s *Store) tempFile(pattern string) (*os.File, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.CreateTemp(s.path("tmp"), pattern)
	if err != nil {
		return nil, nil, err
	}
	return f, s.holdTmpLocked(f.Name()), nil
}

func (s *Store) holdTmpLocked(p string) func() {
	rel := "tmp/" + filepath.Base(p)
	s.holdLocked(rel)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.unholdLocked(rel)
	}
}

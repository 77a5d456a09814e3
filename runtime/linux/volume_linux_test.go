package linux

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A new named volume takes the image's directory at its target, owner,
// mode and files, so that the image's user may write to it; a volume that
// holds anything is left as it is; a target the image lacks leaves the
// volume as it was made.
func TestVolumePopulate(t *testing.T) {
	rt, _ := newRuntime(t)
	t.Parallel()
	img := userImage(t)
	data := filepath.Join(img, "var/lib/app")
	if err := os.MkdirAll(filepath.Join(data, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "sub/seed"), []byte("from the image"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/seed", filepath.Join(data, "link")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"sub/seed", "sub", "link", ""} {
		if err := os.Lchown(filepath.Join(data, p), 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(data, 0o750); err != nil {
		t.Fatal(err)
	}
	// A symlink in the image leads the target to the directory.
	if err := os.Symlink("/var/lib/app", filepath.Join(img, "data")); err != nil {
		t.Fatal(err)
	}
	vols := t.TempDir()
	vol, other := filepath.Join(vols, "vol"), filepath.Join(vols, "other")
	for _, d := range []string{vol, other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	in := runInfo(t, rt, Spec{Image: img, User: "app", Mounts: []Mount{
		{Source: vol, Target: "/data", Populate: true},
		{Source: other, Target: "/nothing/here", Populate: true},
	}, Args: []string{"/app", "-info", "-try-write", "/data/new", "-read", "/data/link"}})
	if w := in.Writes["/data/new"]; w != "" {
		t.Errorf("write to the volume as app: %s", w)
	}
	if r := in.Reads["/data/link"]; r != "66726f6d2074686520696d616765" { // "from the image"
		t.Errorf("read /data/link: %s", r)
	}
	for p, want := range map[string]struct {
		mode     uint32
		uid, gid uint32
	}{
		"":         {unix.S_IFDIR | 0o750, 1000, 1000},
		"sub":      {unix.S_IFDIR | 0o755, 1000, 1000},
		"sub/seed": {unix.S_IFREG | 0o640, 1000, 1000},
		"link":     {unix.S_IFLNK | 0o777, 1000, 1000},
		"new":      {unix.S_IFREG | 0o644, 1000, 1000},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(vol, p), &st); err != nil {
			t.Errorf("volume/%s: %v", p, err)
			continue
		}
		if st.Mode != want.mode || st.Uid != want.uid || st.Gid != want.gid {
			t.Errorf("volume/%s: mode %o, owner %d:%d; want %o, %d:%d", p, st.Mode, st.Uid, st.Gid, want.mode, want.uid, want.gid)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(other, &st); err != nil || st.Mode != unix.S_IFDIR|0o755 || st.Uid != 0 {
		t.Errorf("volume at a path the image lacks: mode %o, owner %d, %v", st.Mode, st.Uid, err)
	}

	// Not new any more: what the apps changed stays.
	if err := os.Remove(filepath.Join(vol, "sub/seed")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(vol, 0o700); err != nil {
		t.Fatal(err)
	}
	runInfo(t, rt, Spec{Image: img, Mounts: []Mount{{Source: vol, Target: "/data", Populate: true}}, Args: []string{"/app", "-info"}})
	if _, err := os.Lstat(filepath.Join(vol, "sub/seed")); !os.IsNotExist(err) {
		t.Errorf("a used volume was filled again: sub/seed: %v", err)
	}
	if err := unix.Stat(vol, &st); err != nil || st.Mode != unix.S_IFDIR|0o700 {
		t.Errorf("a used volume's mode changed: %o, %v", st.Mode, err)
	}
}

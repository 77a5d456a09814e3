//go:build linux

package image

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// unpackInto applies layer to parent/root, with parent/outside holding a
// sentinel file that must survive untouched, and returns root and outside.
func unpackInto(t testing.TB, layer []byte) (root, outside string, err error) {
	t.Helper()
	parent := t.TempDir()
	root, outside = filepath.Join(parent, "root"), filepath.Join(parent, "outside")
	for _, d := range []string{root, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "sentinel"), []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = applyLayer(context.Background(), root, "sha256:test", bytes.NewReader(layer), &budget{limit: testUnpackLimit}, slog.New(slog.DiscardHandler))
	return root, outside, err
}

// checkContained fails t if anything appeared next to root or in outside,
// or if the sentinel changed.
func checkContained(t testing.TB, root, outside string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(root))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"outside", "root"}, names); diff != "" {
		t.Errorf("next to the rootfs (-want +got):\n%s", diff)
	}
	ents, _ = os.ReadDir(outside)
	if len(ents) != 1 {
		t.Errorf("outside holds %d entries, want only the sentinel", len(ents))
	}
	if b, err := os.ReadFile(filepath.Join(outside, "sentinel")); err != nil || string(b) != "untouched" {
		t.Errorf("sentinel = %q, %v", b, err)
	}
}

func TestUnpackHostileLayers(t *testing.T) {
	exists := func(rel string) func(t *testing.T, root, outside string) {
		return func(t *testing.T, root, outside string) {
			if _, err := os.Lstat(filepath.Join(root, rel)); err != nil {
				t.Errorf("%s: %v", rel, err)
			}
		}
	}
	absent := func(rel string) func(t *testing.T, root, outside string) {
		return func(t *testing.T, root, outside string) {
			if _, err := os.Lstat(filepath.Join(root, rel)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s exists (err %v)", rel, err)
			}
		}
	}
	// outsideMarker is replaced by the test's outside directory in names and
	// link targets, so layers can aim at a real directory beyond the rootfs.
	const outsideMarker = "@OUTSIDE@"
	tests := []struct {
		name    string
		entries []tarEntry
		raw     []byte // the layer, when not entries
		wantErr error  // nil: must succeed
		check   func(t *testing.T, root, outside string)
	}{
		{name: "dotdot", entries: []tarEntry{{name: "../evil", body: "x"}}, wantErr: ErrUnsafeLayer},
		{name: "nested dotdot", entries: []tarEntry{{name: "a/../../evil", body: "x"}}, wantErr: ErrUnsafeLayer},
		{name: "absolute dotdot", entries: []tarEntry{{name: "/../evil", body: "x"}}, wantErr: ErrUnsafeLayer},
		{name: "absolute path lands inside", entries: []tarEntry{{name: "/etc/evil", body: "x"}}, check: exists("etc/evil")},
		{name: "absolute path to outside lands inside", entries: []tarEntry{{name: outsideMarker + "/evil", body: "x"}},
			check: func(t *testing.T, root, outside string) { exists(outside+"/evil")(t, root, outside) }},
		{name: "through symlink to /", entries: []tarEntry{{name: "l", typ: '2', link: "/"}, {name: "l/evil-shoal-test", body: "x"}},
			check: func(t *testing.T, root, outside string) {
				exists("evil-shoal-test")(t, root, outside)
				if _, err := os.Lstat("/evil-shoal-test"); err == nil {
					t.Error("wrote /evil-shoal-test on the host")
				}
			}},
		{name: "through symlink to outside dir", entries: []tarEntry{{name: "l", typ: '2', link: outsideMarker}, {name: "l/evil", body: "x"}},
			check: func(t *testing.T, root, outside string) { exists(outside+"/evil")(t, root, outside) }},
		{name: "through relative symlink climbing", entries: []tarEntry{{name: "a/l", typ: '2', link: "../../../../../.."}, {name: "a/l/evil", body: "x"}}, check: exists("evil")},
		{name: "through chained symlinks", entries: []tarEntry{{name: "l1", typ: '2', link: "l2/x"}, {name: "l2", typ: '2', link: outsideMarker}, {name: "l1/evil", body: "x"}},
			check: func(t *testing.T, root, outside string) { exists(outside+"/x/evil")(t, root, outside) }},
		{name: "file replaces symlink", entries: []tarEntry{{name: "l", typ: '2', link: outsideMarker + "/sentinel"}, {name: "l", body: "replaced"}},
			check: func(t *testing.T, root, outside string) {
				if got := readFile(t, filepath.Join(root, "l")); got != "replaced" {
					t.Errorf("l = %q", got)
				}
			}},
		{name: "symlink loop", entries: []tarEntry{{name: "a", typ: '2', link: "b"}, {name: "b", typ: '2', link: "a"}, {name: "a/x", body: "x"}}, wantErr: syscall.ELOOP},
		{name: "hardlink to host passwd", entries: []tarEntry{{name: "pw", typ: '1', link: "/etc/passwd"}}, wantErr: fs.ErrNotExist, check: absent("pw")},
		{name: "hardlink climbing out", entries: []tarEntry{{name: "pw", typ: '1', link: "../../../../etc/passwd"}}, wantErr: ErrUnsafeLayer, check: absent("pw")},
		{name: "hardlink to symlink", entries: []tarEntry{{name: "s", typ: '2', link: "/etc/passwd"}, {name: "h", typ: '1', link: "s"}}, wantErr: ErrUnsafeLayer, check: absent("h")},
		{name: "hardlink through symlink dir", entries: []tarEntry{{name: "d", typ: '2', link: outsideMarker}, {name: "h", typ: '1', link: "d/sentinel"}}, wantErr: fs.ErrNotExist, check: absent("h")},
		{name: "hardlink inside", entries: []tarEntry{{name: "a", body: "x"}, {name: "b", typ: '1', link: "/a"}},
			check: func(t *testing.T, root, outside string) {
				a, _ := os.Stat(filepath.Join(root, "a"))
				b, _ := os.Stat(filepath.Join(root, "b"))
				if !os.SameFile(a, b) {
					t.Error("a and b are not one inode")
				}
			}},
		{name: "char device skipped", entries: []tarEntry{{name: "dev/", typ: '5'}, {name: "dev/mem", typ: '3'}, {name: "dev/sda", typ: '4'}, {name: "fifo", typ: '6'}},
			check: func(t *testing.T, root, outside string) {
				absent("dev/mem")(t, root, outside)
				absent("dev/sda")(t, root, outside)
				absent("fifo")(t, root, outside)
			}},
		{name: "setuid and setgid stripped", entries: []tarEntry{{name: "su", body: "x", mode: 0o4755}, {name: "sg/", typ: '5', mode: 0o2775}, {name: "tmp/", typ: '5', mode: 0o1777}},
			check: func(t *testing.T, root, outside string) {
				for rel, want := range map[string]fs.FileMode{"su": 0o755, "sg": fs.ModeDir | 0o775, "tmp": fs.ModeDir | fs.ModeSticky | 0o777} {
					fi, err := os.Lstat(filepath.Join(root, rel))
					if err != nil || fi.Mode() != want {
						t.Errorf("%s mode = %v (%v), want %v", rel, fi.Mode(), err, want)
					}
				}
			}},
		{name: "whiteout of dotdot", entries: []tarEntry{{name: "a/.wh.."}}, wantErr: ErrUnsafeLayer},
		{name: "rootfs as file", entries: []tarEntry{{name: ".", body: "x"}}, wantErr: ErrUnsafeLayer},
		{name: "sparse 100 GiB file", raw: sparseLayer(t, 100<<30), wantErr: ErrTooLarge, check: absent("big")},
		{name: "files over the limit", entries: []tarEntry{{name: "a", body: noise(1, testUnpackLimit/2)}, {name: "b", body: noise(2, testUnpackLimit/2+1)}},
			wantErr: ErrTooLarge, check: absent("b")},
		{name: "sparse file within the limit stays sparse", raw: sparseLayer(t, testUnpackLimit),
			check: func(t *testing.T, root, outside string) { checkSparse(t, filepath.Join(root, "big"), testUnpackLimit) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			outside := filepath.Join(parent, "outside")
			// Build the layer with the real outside path, then unpack it in
			// this same parent so the marker means that directory.
			fix := func(s string) string {
				return string(bytes.ReplaceAll([]byte(s), []byte(outsideMarker), []byte(outside)))
			}
			var entries []tarEntry
			for _, e := range tt.entries {
				e.name, e.link = fix(e.name), fix(e.link)
				entries = append(entries, e)
			}
			root := filepath.Join(parent, "root")
			for _, d := range []string{root, outside} {
				os.Mkdir(d, 0o755)
			}
			os.WriteFile(filepath.Join(outside, "sentinel"), []byte("untouched"), 0o644)
			layer := tt.raw
			if layer == nil {
				layer = makeTar(t, entries...)
			}
			err := applyLayer(context.Background(), root, "sha256:test", bytes.NewReader(layer), &budget{limit: testUnpackLimit}, slog.New(slog.DiscardHandler))
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("unpack: %v", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("unpack error = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !bytes.Contains([]byte(err.Error()), []byte("sha256:test")) {
				t.Errorf("error %q does not name the layer", err)
			}
			checkContained(t, root, outside)
			if tt.check != nil {
				tt.check(t, root, outside)
			}
		})
	}
}

func TestUnpackPreservesMetadata(t *testing.T) {
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	layer := makeTar(t,
		tarEntry{name: "bin/", typ: '5', mode: 0o750, uid: 0, gid: 0, mtime: mtime},
		tarEntry{name: "bin/tool", body: "#!", mode: 0o711, uid: 1234, gid: 5678, mtime: mtime},
		tarEntry{name: "bin/link", typ: '2', link: "tool", uid: 1234, gid: 5678, mtime: mtime},
	)
	root, outside, err := unpackInto(t, layer)
	if err != nil {
		t.Fatal(err)
	}
	checkContained(t, root, outside)
	tool, err := os.Lstat(filepath.Join(root, "bin/tool"))
	if err != nil {
		t.Fatal(err)
	}
	if tool.Mode() != 0o711 || !tool.ModTime().Equal(mtime) {
		t.Errorf("tool mode %v mtime %v", tool.Mode(), tool.ModTime())
	}
	if dir, _ := os.Lstat(filepath.Join(root, "bin")); dir.Mode() != fs.ModeDir|0o750 || !dir.ModTime().Equal(mtime) {
		t.Errorf("bin mode %v mtime %v", dir.Mode(), dir.ModTime())
	}
	if l, err := os.Readlink(filepath.Join(root, "bin/link")); err != nil || l != "tool" {
		t.Errorf("link = %q, %v", l, err)
	}
	if os.Geteuid() == 0 {
		for _, rel := range []string{"bin/tool", "bin/link"} {
			fi, _ := os.Lstat(filepath.Join(root, rel))
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != 1234 || st.Gid != 5678 {
				t.Errorf("%s owner %d:%d, want 1234:5678", rel, st.Uid, st.Gid)
			}
		}
	}
}

func TestUnpackSameLayerWhiteoutKeepsOwnFiles(t *testing.T) {
	root, outside, err := unpackInto(t, makeTar(t,
		tarEntry{name: "d/mine", body: "x"},
		tarEntry{name: "d/.wh..wh..opq"},
		tarEntry{name: "d/.wh.mine"},
	))
	if err != nil {
		t.Fatal(err)
	}
	checkContained(t, root, outside)
	if got := readFile(t, filepath.Join(root, "d/mine")); got != "x" {
		t.Errorf("d/mine = %q", got)
	}
}

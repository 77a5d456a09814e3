package linux

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func capMask(t *testing.T, names ...string) uint64 {
	t.Helper()
	var m uint64
	for _, n := range names {
		b, err := capBit(n)
		if err != nil {
			t.Fatal(err)
		}
		m |= b
	}
	return m
}

func TestCapSet(t *testing.T) {
	def := capMask(t, DefaultCapabilities...)
	// Docker's default is 0xa80425fb; shoal's lacks MKNOD (bit 27).
	if def != 0xa80425fb&^(1<<27) {
		t.Errorf("default set = %#x", def)
	}
	for _, tc := range []struct {
		name      string
		add, drop []string
		want      uint64
		err       string
	}{
		{"default", nil, nil, def, ""},
		{"add", []string{"NET_ADMIN", "cap_sys_ptrace"}, nil, def | capMask(t, "NET_ADMIN", "SYS_PTRACE"), ""},
		{"drop", nil, []string{"CAP_CHOWN", "kill"}, def &^ capMask(t, "CHOWN", "KILL"), ""},
		{"drop all add one", []string{"NET_BIND_SERVICE"}, []string{"ALL"}, capMask(t, "NET_BIND_SERVICE"), ""},
		{"add all drop one", []string{"all"}, []string{"SYS_ADMIN"}, (1<<len(capNames) - 1) &^ capMask(t, "SYS_ADMIN"), ""},
		{"unknown", []string{"FLY"}, nil, 0, `unknown capability "FLY"`},
		{"both", []string{"KILL"}, []string{"CAP_KILL"}, 0, "KILL is both added and dropped"},
	} {
		got, err := capSet(tc.add, tc.drop)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: capSet = %#x, %v; want %#x", tc.name, got, err, tc.want)
		}
	}
}

func TestRlimits(t *testing.T) {
	got, err := rlimits([]Rlimit{{Type: "nofile", Soft: 10, Hard: 20}, {Type: "RLIMIT_CORE"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []rlimit{{Resource: rlimitNofile, Soft: 10, Hard: 20}, {Resource: 4}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rlimits (-want +got):\n%s", diff)
	}
	got, _ = rlimits(nil)
	if diff := cmp.Diff([]rlimit{{Resource: rlimitNofile, Soft: 1024, Hard: 524288, Default: true}}, got); diff != "" {
		t.Errorf("default rlimits (-want +got):\n%s", diff)
	}
	for _, bad := range [][]Rlimit{
		{{Type: "RLIMIT_FOO"}},
		{{Type: "nofile", Soft: 2, Hard: 1}},
		{{Type: "core"}, {Type: "CORE"}},
	} {
		if _, err := rlimits(bad); err == nil {
			t.Errorf("rlimits(%v) accepted", bad)
		}
	}
}

const (
	testPasswd = `root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1::/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:The App:/home/app:/bin/sh
broken line
nohome:x:1001:1001:::/bin/sh
`
	testGroup = `root:x:0:
audio:x:29:app
video:x:44:other,app
app:x:1000:
wheel:x:10:root
`
)

func TestResolveUser(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want execUser
		err  string
	}{
		{"", execUser{UID: 0, GID: 0, Groups: []uint32{10}, Home: "/root"}, ""},
		{"app", execUser{UID: 1000, GID: 1000, Groups: []uint32{29, 44}, Home: "/home/app"}, ""},
		{"1000", execUser{UID: 1000, GID: 1000, Groups: []uint32{29, 44}, Home: "/home/app"}, ""},
		{"app:audio", execUser{UID: 1000, GID: 29, Groups: []uint32{44}, Home: "/home/app"}, ""},
		{"app:5", execUser{UID: 1000, GID: 5, Groups: []uint32{29, 44}, Home: "/home/app"}, ""},
		{"4242", execUser{UID: 4242, GID: 0, Home: "/"}, ""},
		{"4242:4243", execUser{UID: 4242, GID: 4243, Home: "/"}, ""},
		{"nohome", execUser{UID: 1001, GID: 1001, Home: "/"}, ""},
		{"nobody", execUser{}, `user "nobody" not found`},
		{"app:staff", execUser{}, `group "staff" not found`},
		{"a:b:c", execUser{}, "want uid"},
		{":1", execUser{}, "want uid"},
		{"4294967295", execUser{}, "not found"},
	} {
		got, err := resolveUser(tc.spec, strings.NewReader(testPasswd), strings.NewReader(testGroup))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("resolveUser(%q): err = %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("resolveUser(%q): %v", tc.spec, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("resolveUser(%q) (-want +got):\n%s", tc.spec, diff)
		}
	}
	// An image without the files: numbers work, names do not.
	if u, err := resolveUser("7:8", nil, nil); err != nil || u.UID != 7 || u.GID != 8 || u.Home != "/" {
		t.Errorf("without files: %+v, %v", u, err)
	}
	if _, err := resolveUser("app", nil, nil); err == nil {
		t.Error("a name resolved without /etc/passwd")
	}
}

func FuzzResolveUser(f *testing.F) {
	f.Add("app:audio", testPasswd, testGroup)
	f.Fuzz(func(t *testing.T, spec, passwd, group string) {
		_, _ = resolveUser(spec, strings.NewReader(passwd), strings.NewReader(group))
	})
}

func TestResolveInRoot(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	for _, d := range []string{"etc", "usr/lib", "data"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"abs":     outside,                     // absolute: from the container's root
		"up":      "../../../../../" + outside, // relative, climbing past the root
		"lib":     "usr/lib",
		"usr/up2": "../etc",
		"loop":    "loop",
		"etcfile": "/etc/passwd",
	}
	for l, dest := range links {
		if err := os.Symlink(dest, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ target, want, err string }{
		{"/data", "/data", ""},
		{"/data/new/deeper", "/data/new/deeper", ""},
		{"/abs/x", outside + "/x", ""},
		{"/up/x", outside + "/x", ""},
		{"/../../x", "/x", ""},
		{"/lib/mod", "/usr/lib/mod", ""},
		{"/usr/up2/hosts", "/etc/hosts", ""},
		{"/etcfile", "/etc/passwd", ""},
		{"/loop/x", "", "too many levels"},
	} {
		got, err := resolveInRoot(root, tc.target)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("resolveInRoot(%q): err = %v, want %q", tc.target, err, tc.err)
			}
			continue
		}
		if err != nil || got != filepath.Join(root, tc.want) {
			t.Errorf("resolveInRoot(%q) = %q, %v; want %q under the root", tc.target, got, err, tc.want)
		}
	}
}

package rootfs

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMountPoints(t *testing.T) {
	const info = `22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 22 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
90 22 0:50 / /data/containers/a\040b/fs/merged rw - overlay overlay rw,lowerdir=/x
91 90 0:51 / /data/containers/a\040b/fs/merged/proc rw - proc proc rw
92 22 0:52 / /data/containers/ab/fs/merged rw - overlay overlay rw
`
	points, err := mountPoints(strings.NewReader(info))
	if err != nil {
		t.Fatal(err)
	}
	got := under(points, "/data/containers/a b/")
	want := []string{"/data/containers/a b/fs/merged/proc", "/data/containers/a b/fs/merged"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("under (-want +got):\n%s", diff)
	}
	if got := under(points, "/data/containers/a"); len(got) != 0 {
		t.Errorf("under a sibling prefix = %v, want none", got)
	}
}

func TestOverlayOptions(t *testing.T) {
	if got, ok := overlayOptions("/i", "/d/upper", "/d/work"); !ok || got != "lowerdir=/i,upperdir=/d/upper,workdir=/d/work" {
		t.Errorf("overlayOptions = %q, %v", got, ok)
	}
	for _, bad := range []string{"/a,b", "/a:b", `/a\b`} {
		if _, ok := overlayOptions(bad, "/u", "/w"); ok {
			t.Errorf("overlayOptions accepted %q", bad)
		}
	}
}

package mountinfo

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	const info = `22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
90 22 0:50 /sub /data/a\040b rw - overlay overlay rw,lowerdir=/x
bad line
91 90 0:51 / /data/x rw shared:2 master:3 - proc proc rw
`
	got, err := Parse(strings.NewReader(info))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Dev: "0:21", Root: "/", Point: "/", FSType: "ext4"},
		{Dev: "0:50", Root: "/sub", Point: "/data/a b", FSType: "overlay"},
		{Dev: "0:51", Root: "/", Point: "/data/x", FSType: "proc"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Parse (-want +got):\n%s", d)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`a\040b`: "a b", `tab\011`: "tab\t", `back\134slash`: `back\slash`, `odd\04`: `odd\04`, "plain": "plain"} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

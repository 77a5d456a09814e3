package linux

import (
	"bytes"
	"strings"
	"testing"
)

func TestBridgeResolvConf(t *testing.T) {
	const header = "# Written by shoal when the container started: the host's resolv.conf\n" +
		"# without its nameservers on loopback (the container has its own).\n"
	cases := []struct {
		name, host, want string
		ok               bool
	}{
		{"plain", "nameserver 10.0.0.1\n", "nameserver 10.0.0.1\n", true},
		{"loopback dropped, the rest kept in order",
			"# comment\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\n" +
				"search example.org lan\noptions edns0 trust-ad\n; another comment\n",
			"nameserver 192.168.1.1\nnameserver fe80::1%eth0\nsearch example.org lan\noptions edns0 trust-ad\n", true},
		{"a v4-mapped loopback", "nameserver ::ffff:127.0.0.1\n", "", false},
		{"systemd-resolved's stub only", "nameserver 127.0.0.53\noptions edns0\nsearch .\n", "options edns0\nsearch .\n", false},
		{"garbage and odd spacing", "nameserver\nnameserver not-an-ip\n  nameserver\t9.9.9.9  \nsortlist 10.0.0.0\n", "nameserver 9.9.9.9\n", true},
		{"empty", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := bridgeResolvConf([]byte(tc.host))
			if string(got) != header+tc.want || ok != tc.ok {
				t.Errorf("got %v\n%s\nwant %v\n%s", ok, got, tc.ok, header+tc.want)
			}
		})
	}
}

func TestWriteHosts(t *testing.T) {
	var b bytes.Buffer
	if err := writeHosts(&b, "web-0", strings.NewReader("10.1.1.1 nas\n")); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{"\n127.0.0.1\tlocalhost\n", "\n::1\tlocalhost ip6-localhost ip6-loopback\n", "\n127.0.1.1\tweb-0\n", "\n10.1.1.1 nas\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("hosts lacks %q:\n%s", want, got)
		}
	}
	b.Reset()
	huge := strings.NewReader(strings.Repeat("#", maxHostHosts+1))
	if err := writeHosts(&b, "web-0", huge); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a host file over the bound: %v", err)
	}
}

// A host name goes into /etc/hosts: nothing that would change what the
// file says is accepted.
func TestHostnameRefused(t *testing.T) {
	for _, name := range []string{"a b", "a\n127.0.0.1 evil", "a#b", "-a", "a\tb"} {
		_, err := Spec{ID: "c", Image: "/img", Args: []string{"/app"}, Hostname: name}.normalize()
		if err == nil || !strings.Contains(err.Error(), "hostname") {
			t.Errorf("hostname %q: %v", name, err)
		}
	}
	if _, err := (Spec{ID: "c", Image: "/img", Args: []string{"/app"}, Hostname: "web-0.lan"}).normalize(); err != nil {
		t.Errorf("a valid hostname: %v", err)
	}
}

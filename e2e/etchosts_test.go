package e2e

import (
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// A distribution image's glibc programs resolve localhost and the
// container's own name through its /etc/nsswitch.conf and the /etc/hosts
// shoal gives every container, and see its name in /etc/hostname: in an
// app's instance (shoal exec), in a one-off (shoal run) and with the
// host's network, with a read-only rootfs.
func TestDistroImageNames(t *testing.T) {
	archive := testutil.BuildHostFilesImage(t)
	n := newNode(t, "e2e-etchosts")
	n.start()
	n.must("image", "import", archive)

	n.must("apply", "-f", n.writeFile("web.yaml",
		"name: web\nimage: hostfiles:1\nread_only: true\ncommand: [/bin/sleep, \"3600\"]\n"))
	waitInstance(t, n, running)
	checks := []struct {
		args []string
		want string
	}{
		// getaddrinfo, as most programs resolve. (Not ahostsv4: with only
		// loopback, glibc's AI_ADDRCONFIG finds no IPv4 address to use.)
		{[]string{"getent", "ahosts", "localhost"}, "127.0.0.1 "},
		{[]string{"getent", "hosts", "localhost"}, "localhost"},
		{[]string{"getent", "hosts", "web-0"}, "127.0.1.1 "},
		{[]string{"hostname"}, "web-0\n"},
		{[]string{"cat", "/etc/hostname"}, "web-0\n"},
	}
	for _, c := range checks {
		out, errOut, code := n.shoal(append([]string{"exec", "web/0", "--"}, c.args...)...)
		if code != 0 || !strings.Contains(out, c.want) {
			t.Errorf("shoal exec web/0 -- %s: exit %d, stdout %q (want %q), stderr %q", strings.Join(c.args, " "), code, out, c.want, errOut)
		}
	}
	n.must("rm", "web")

	for _, network := range []string{"bridge", "host"} {
		out, errOut, code := n.shoal("run", "--rm", "--name", "probe", "--network", network, "hostfiles:1", "--",
			"sh", "-c", "getent hosts localhost && getent hosts probe && hostname && cat /etc/hostname")
		if code != 0 || !strings.Contains(out, "localhost") || !strings.Contains(out, "127.0.1.1 ") ||
			strings.Count(out, "probe\n") != 3 {
			t.Errorf("shoal run --network %s: exit %d, stdout %q, stderr %q", network, code, out, errOut)
		}
	}
}

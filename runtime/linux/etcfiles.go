package linux

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// A container's /etc/hosts, /etc/hostname and /etc/resolv.conf are files of
// its state directory, bound read-only over the image's: the image's copies
// know nothing of the container's name, and the host's resolvers on
// loopback are not reachable from a network namespace of its own.

// The files in a container's state directory bound over the image's.
const (
	hostsFile      = "hosts"
	hostnameFile   = "hostname"
	resolvConfFile = "resolv.conf"
)

// The host's files the container's are made from.
const (
	hostHosts      = "/etc/hosts"
	hostResolvConf = "/etc/resolv.conf"
	// systemd-resolved's list of the upstream servers, for a host whose
	// /etc/resolv.conf names only its stub on 127.0.0.53.
	resolvedUpstream = "/run/systemd/resolve/resolv.conf"
)

// Bounds on what is read from the host's files: a hosts file used as a
// block list can hold hundreds of thousands of lines; a resolv.conf is
// small (glibc uses three nameservers and six search domains).
const (
	maxHostHosts      = 32 << 20
	maxHostResolvConf = 64 << 10
)

// hostsHeader is how every container's /etc/hosts begins: loopback and the
// container's own name, on 127.0.1.1 as Debian does for a host without a
// fixed address (the container has none yet).
func hostsHeader(hostname string) string {
	return "# Written by shoal when the container started.\n" +
		"127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\n" +
		"ff00::0\tip6-mcastprefix\n" +
		"ff02::1\tip6-allnodes\n" +
		"ff02::2\tip6-allrouters\n" +
		"127.0.1.1\t" + hostname + "\n"
}

// writeHosts writes the container's /etc/hosts to w; with the host's
// network, the host's hosts file (host, which may be nil) follows, so the
// container resolves what the host does and still its own name.
func writeHosts(w io.Writer, hostname string, host io.Reader) error {
	if _, err := io.WriteString(w, hostsHeader(hostname)); err != nil {
		return err
	}
	if host == nil {
		return nil
	}
	if _, err := fmt.Fprintf(w, "\n# The host's %s:\n", hostHosts); err != nil {
		return err
	}
	n, err := io.Copy(w, io.LimitReader(host, maxHostHosts+1))
	if err != nil {
		return err
	}
	if n > maxHostHosts {
		return fmt.Errorf("the host's %s is larger than %d bytes", hostHosts, maxHostHosts)
	}
	return nil
}

// bridgeResolvConf is the resolv.conf of a container with a network
// namespace of its own, made from the host's: its search, domain and
// options lines, and its nameservers other than loopback ones, which would
// be the container's own loopback. ok is false when no nameserver is left.
func bridgeResolvConf(host []byte) (out []byte, ok bool) {
	var b bytes.Buffer
	b.WriteString("# Written by shoal when the container started: the host's resolv.conf\n" +
		"# without its nameservers on loopback (the container has its own).\n")
	sc := bufio.NewScanner(bytes.NewReader(host))
	sc.Buffer(make([]byte, 0, 4096), maxHostResolvConf)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			// A link-local v6 address may carry a zone (fe80::1%eth0).
			addr, err := netip.ParseAddr(f[1])
			if err != nil || addr.Unmap().IsLoopback() {
				continue
			}
			ok = true
		case "search", "domain", "options":
		default:
			continue
		}
		b.WriteString(strings.Join(f, " "))
		b.WriteByte('\n')
	}
	return b.Bytes(), ok
}

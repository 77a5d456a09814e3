//go:build linux

package lab

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// inodes are the inode numbers of the lab's namespaces.
func (l *Lab) inodes(t testing.TB) map[uint64]bool {
	t.Helper()
	inos := map[uint64]bool{}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, fd := range append([]int{int(l.hub)}, nodeFds(l)...) {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		inos[st.Ino] = true
	}
	return inos
}

func nodeFds(l *Lab) []int {
	var fds []int
	for _, n := range l.nodes {
		fds = append(fds, int(n.ns))
	}
	return fds
}

// nodeTables lists the nftables tables in node name's namespace.
func nodeTables(t testing.TB, l *Lab, name string) []string {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(l.mustNode(name).ns)))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tb := range tables {
		names = append(names, tb.Name)
	}
	return names
}

// assertNoHostTable fails if the lab's table is in the host's namespace.
func assertNoHostTable(t testing.TB) {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == tableName {
			t.Errorf("table %s in the host's namespace", tableName)
		}
	}
}

// assertNoHostAddr fails if an address of the lab is on a host link.
func assertNoHostAddr(t testing.TB, l *Lab) {
	t.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if l.Prefix().Contains(mustAddr(t, a.IP)) {
			t.Errorf("lab address %s on a host link", a.IPNet)
		}
	}
}

func mustAddr(t testing.TB, ip net.IP) netip.Addr {
	t.Helper()
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		t.Fatalf("bad IPv4 %v", ip)
	}
	return a
}

// hostLinks names the links of the host's namespace, sorted.
func hostLinks(t testing.TB) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

var childPid = regexp.MustCompile(`(?m)^(group|session)-child (\d+)$`)

// childPids reads the pids spawn printed into the log at path.
func childPids(path string) (group, session int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	for _, m := range childPid.FindAllStringSubmatch(string(b), -1) {
		pid, _ := strconv.Atoi(m[2])
		if m[1] == "group" {
			group = pid
		} else {
			session = pid
		}
	}
	if group == 0 || session == 0 {
		return 0, 0, fmt.Errorf("no child pids in %s yet", path)
	}
	return group, session, nil
}

// alive reports whether pid is a process that has not exited (a zombie
// has).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// fdsOn lists this process's file descriptors that keep one of the
// namespaces alive: namespace descriptors, and sockets (netlink, nftables)
// opened in them.
func fdsOn(t testing.TB, inos map[uint64]bool) []string {
	t.Helper()
	fds, err := filepath.Glob("/proc/self/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	var on []string
	for _, path := range fds {
		if ino, ok := netnsInode(path); ok && inos[ino] {
			on = append(on, path)
			continue
		}
		link, err := os.Readlink(path)
		if err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		fd, err := strconv.Atoi(filepath.Base(path))
		if err != nil {
			continue
		}
		nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(nsfd, &st) == nil && inos[st.Ino] {
			on = append(on, path+" ("+link+")")
		}
		unix.Close(nsfd)
	}
	return on
}

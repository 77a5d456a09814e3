package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/vishvananda/netns"
)

// maxNodes is how many nodes fit the naming: the node index is the last
// octet of its address.
const maxNodes = 254

// teardownTimeout bounds each wait of the teardown: for killed processes to
// be reaped. SIGKILL is not ignorable, so only a process stuck in the
// kernel takes longer.
const teardownTimeout = 10 * time.Second

// labSeq numbers the labs of this test process, so that labs running in
// parallel get different second octets (see New). The namespaces already
// keep labs apart; distinct subnets keep their logs unambiguous.
var labSeq atomic.Uint32

// validName keeps node names usable as file names and in messages.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)

// Lab is a set of nodes on one bridge. Its methods may be called from any
// goroutine, except AddNode, which fails the test on error. Those that
// return no error report misuse (an unknown node) by panicking, as the
// test's programming error.
type Lab struct {
	t      testing.TB
	octet  int // the lab's second octet
	prefix netip.Prefix
	bridge string
	hub    netns.NsHandle
	logDir string

	mu    sync.Mutex // guards following
	nodes []*node    // in the order of AddNode; nodes[i] has index i+1
	cut   map[pair]bool
}

// Node is what a test needs to know of a node.
type Node struct {
	Name string
	IP   netip.Addr // on eth0 in the node's namespace
}

// node is a Node with its namespace, log and process.
type node struct {
	Node
	ns      netns.NsHandle
	logPath string
	log     *os.File // O_APPEND, shared by the node's processes and the lab's markers

	mu   sync.Mutex // guards following
	argv []string   // of the last Start, for Restart
	env  []string
	proc *proc // of the last Start; nil before
}

// New creates an empty lab, with its hub namespace and bridge, and
// registers its teardown with t.Cleanup. It skips the test unless it runs
// as root.
//
// The lab's subnet is 10.X.0.0/16 with X in 64..255, taken from a counter
// of this process (offset by its pid), so labs of one test binary never
// share a subnet; labs of different test binaries may, harmlessly.
func New(t testing.TB) *Lab {
	t.Helper()
	testutil.RequireRoot(t)
	octet := 64 + int((uint32(os.Getpid())+labSeq.Add(1))%192)
	l := &Lab{
		t:      t,
		octet:  octet,
		prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(octet), 0, 0}), 16),
		bridge: fmt.Sprintf("slab%d", octet),
		logDir: t.TempDir(),
		cut:    map[pair]bool{},
	}
	hub, err := newNetns()
	if err != nil {
		t.Fatalf("lab: hub namespace: %v", err)
	}
	l.hub = hub
	t.Cleanup(l.teardown)
	if err := addBridge(hub, l.bridge); err != nil {
		t.Fatalf("lab: %v", err)
	}
	return l
}

// Prefix is the lab's subnet; every node has an address in it.
func (l *Lab) Prefix() netip.Prefix { return l.prefix }

// AddNode creates node name: its namespace with lo up, and eth0 with the
// next address of the lab, joined to the bridge. It fails the test on
// error, so call it from the test's goroutine.
func (l *Lab) AddNode(name string) Node {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !validName.MatchString(name) {
		l.t.Fatalf("lab: node name %q: want letters, digits, '_', '.' or '-', at most 32", name)
	}
	if l.lookup(name) != nil {
		l.t.Fatalf("lab: node %q exists", name)
	}
	if len(l.nodes) == maxNodes {
		l.t.Fatalf("lab: more than %d nodes", maxNodes)
	}
	index := len(l.nodes) + 1
	n := &node{
		Node:    Node{Name: name, IP: netip.AddrFrom4([4]byte{10, byte(l.octet), 0, byte(index)})},
		logPath: filepath.Join(l.logDir, name+".log"),
	}
	ns, err := newNetns()
	if err != nil {
		l.t.Fatalf("lab: node %s: %v", name, err)
	}
	n.ns = ns
	// Registered before anything else can fail, so teardown closes it.
	l.nodes = append(l.nodes, n)
	if n.log, err = os.OpenFile(n.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
		l.t.Fatalf("lab: node %s: %v", name, err)
	}
	hubEnd := fmt.Sprintf("%sn%d", l.bridge, index)
	if err := addVeth(l.hub, l.bridge, hubEnd, ns, netip.PrefixFrom(n.IP, l.prefix.Bits())); err != nil {
		l.t.Fatalf("lab: node %s: %v", name, err)
	}
	return n.Node
}

// IP is the address of node name, as a string for argv and URLs.
func (l *Lab) IP(name string) string { return l.mustNode(name).IP.String() }

// Nodes lists the lab's nodes in the order they were added.
func (l *Lab) Nodes() []Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Node, len(l.nodes))
	for i, n := range l.nodes {
		out[i] = n.Node
	}
	return out
}

func (l *Lab) node(name string) (*node, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.lookup(name); n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("lab: no node %q", name)
}

// lookup finds a node; l.mu is held.
func (l *Lab) lookup(name string) *node {
	for _, n := range l.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func (l *Lab) mustNode(name string) *node {
	n, err := l.node(name)
	if err != nil {
		panic(err)
	}
	return n
}

// teardown leaves nothing of the lab: processes killed and reaped, logs
// shown if the test failed, namespaces released.
func (l *Lab) teardown() {
	l.mu.Lock()
	nodes := l.nodes
	l.nodes = nil
	l.mu.Unlock()

	for _, n := range nodes {
		if err := n.kill(); err != nil {
			l.t.Errorf("lab: teardown of %s: %v", n.Name, err)
		}
	}
	// Processes that left their group (new sessions) are still in the
	// namespaces, keeping them alive.
	all := []netns.NsHandle{l.hub}
	for _, n := range nodes {
		all = append(all, n.ns)
	}
	if err := killAllIn(all, teardownTimeout); err != nil {
		l.t.Errorf("lab: teardown: %v", err)
	}
	if l.t.Failed() {
		for _, n := range nodes {
			l.t.Logf("lab: %s", tail(n.logPath))
		}
	}
	var errs []error
	for _, n := range nodes {
		if n.log != nil {
			errs = append(errs, n.log.Close())
		}
		errs = append(errs, n.ns.Close())
	}
	errs = append(errs, l.hub.Close())
	if err := errors.Join(errs...); err != nil {
		l.t.Errorf("lab: teardown: %v", err)
	}
}

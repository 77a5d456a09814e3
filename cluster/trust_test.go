package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/cluster/port"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/store"
)

// trustState of a test: what the replicated state would say.
type fakeTrustState struct {
	mu      sync.Mutex
	secrets *store.Secrets
	revoked map[string]bool
	nodes   []store.NodeRecord
}

func (s *fakeTrustState) Secrets() (store.Secrets, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.secrets == nil {
		return store.Secrets{}, false, nil
	}
	return *s.secrets, true, nil
}

func (s *fakeTrustState) Revoked(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revoked[id]
}

func (s *fakeTrustState) Nodes() ([]store.NodeRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.nodes), nil
}

// issueIdentity gives node a key and a certificate of ca.
func issueIdentity(t *testing.T, ca *pki.CA, node pki.NodeIdentity) *pki.Identity {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(&key.PublicKey, node)
	if err != nil {
		t.Fatal(err)
	}
	ident, err := pki.NewIdentity(certPEM, pki.KeyPEM(key), ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	return ident
}

// stateOf is the TLS state a server sees of a client presenting cert.
func stateOf(t *testing.T, cert *tls.Certificate) tls.ConnectionState {
	t.Helper()
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
}

// startConfiguredRaft runs a Raft server "self" whose configuration is
// servers; it reaches none of them, which a configuration does not need.
func startConfiguredRaft(t *testing.T, servers []raft.Server) *raft.Raft {
	t.Helper()
	conf := raft.DefaultConfig()
	conf.LocalID = "self"
	conf.Logger = hclogFor(testutil.Logger(t), "raft")
	addr, trans := raft.NewInmemTransport("self@127.0.0.1:1")
	servers = append(servers, raft.Server{ID: "self", Address: addr, Suffrage: raft.Nonvoter})
	logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	if err := raft.BootstrapCluster(conf, logs, logs, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
		t.Fatal(err)
	}
	r, err := raft.NewRaft(conf, &raft.MockFSM{}, logs, logs, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown() })
	return r
}

// trustFixture is a cluster as the trust part of node "self", a
// non-voter, sees it: voters v and v2, non-voter nv, the revoked voter
// rv, a node x with a voter certificate that Raft does not count as a
// voter, an admitted admin credential and one that is not, and a node
// of another cluster.
type trustFixture struct {
	ca                    *pki.CA
	self, v, nv, rv, x    *pki.Identity
	foreign               *pki.Identity
	admin, stranger       tls.Certificate
	state                 *fakeTrustState
	epoch                 *atomic.Uint64
	raft                  *openingRaft
	trust                 *trust
	confRaft              *raft.Raft
	voterAddr, voter2Addr raft.ServerAddress
}

// openRaft opens Raft to the trust part, as New does once Raft runs.
func (f *trustFixture) openRaft() {
	p := &raftParts{}
	p.cur.Store(f.confRaft)
	f.raft.open(p)
}

func newTrustFixture(t *testing.T) *trustFixture {
	t.Helper()
	ca, err := pki.NewCA("trusted")
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	f := &trustFixture{ca: ca, epoch: &atomic.Uint64{}, raft: &openingRaft{},
		voterAddr: raftAddr("vid", "10.0.0.1:7000"), voter2Addr: raftAddr("v2id", "10.0.0.2:7000")}
	f.self = issueIdentity(t, ca, pki.NodeIdentity{Name: "self", ID: "self"})
	f.v = issueIdentity(t, ca, pki.NodeIdentity{Name: "v", ID: "vid", Voter: true})
	f.nv = issueIdentity(t, ca, pki.NodeIdentity{Name: "nv", ID: "nvid"})
	f.rv = issueIdentity(t, ca, pki.NodeIdentity{Name: "rv", ID: "rvid", Voter: true})
	f.x = issueIdentity(t, ca, pki.NodeIdentity{Name: "x", ID: "xid", Voter: true})
	f.foreign = issueIdentity(t, other, pki.NodeIdentity{Name: "v", ID: "vid", Voter: true})
	admin, stranger := pki.NewCredential(ca.Fingerprint()), pki.NewCredential(ca.Fingerprint())
	if f.admin, err = admin.Certificate(); err != nil {
		t.Fatal(err)
	}
	if f.stranger, err = stranger.Certificate(); err != nil {
		t.Fatal(err)
	}
	f.state = &fakeTrustState{
		secrets: &store.Secrets{AdminKeys: [][]byte{admin.PublicKey()}},
		revoked: map[string]bool{"rvid": true},
		nodes:   []store.NodeRecord{{Name: "nv", ID: "nvid"}, {Name: "v", ID: "vid"}},
	}
	f.trust = newTrust(identity{Name: "self", ID: "self"}, f.self, f.state, f.raft, f.epoch, testutil.Logger(t))
	f.confRaft = startConfiguredRaft(t, []raft.Server{
		{ID: "vid", Address: f.voterAddr, Suffrage: raft.Voter},
		{ID: "v2id", Address: f.voter2Addr, Suffrage: raft.Voter},
		{ID: "nvid", Address: raftAddr("nvid", "10.0.0.3:7000"), Suffrage: raft.Nonvoter},
		{ID: "rvid", Address: raftAddr("rvid", "10.0.0.4:7000"), Suffrage: raft.Voter},
	})
	return f
}

// Who may speak what on the cluster port, decided by the trust part
// alone from real certificates: Raft by voter certificates of the
// current epoch, node calls by nodes, the API by the admin credential and
// current voters, joining by anyone; a revoked node by nothing.
func TestTrustAdmitsByProtocol(t *testing.T) {
	f := newTrustFixture(t)
	tr := f.trust
	v, nv, rv, x := stateOf(t, f.v.Certificate()), stateOf(t, f.nv.Certificate()), stateOf(t, f.rv.Certificate()), stateOf(t, f.x.Certificate())
	admin, stranger, foreign := stateOf(t, &f.admin), stateOf(t, &f.stranger), stateOf(t, f.foreign.Certificate())
	none := tls.ConnectionState{}

	// Before Raft opens on the port, no node is a voter, and nothing fails.
	if tr.allow(pki.ProtoAPI, v) {
		t.Error("API admitted a voter's certificate before Raft opened")
	}
	var nve *api.NotVoterError
	if err := tr.notVoter(); !errors.As(err, &nve) || len(nve.Voters) != 0 {
		t.Errorf("notVoter before Raft opened: %v", err)
	}
	f.openRaft()

	raft0 := pki.RaftProto(0)
	cases := []struct {
		name  string
		proto string
		cs    tls.ConnectionState
		want  bool
	}{
		{"join, anyone", pki.ProtoJoin, none, true},
		{"raft, voter", raft0, v, true},
		{"raft, marked voter Raft does not count", raft0, x, true},
		{"raft, non-voter", raft0, nv, false},
		{"raft, revoked voter", raft0, rv, false},
		{"raft, admin", raft0, admin, false},
		{"raft, another epoch", pki.RaftProto(1), v, false},
		{"raft, another cluster's voter", raft0, foreign, false},
		{"node, non-voter", pki.ProtoNode, nv, true},
		{"node, revoked", pki.ProtoNode, rv, false},
		{"node, admin", pki.ProtoNode, admin, false},
		{"node, anonymous", pki.ProtoNode, none, false},
		{"api, admin", pki.ProtoAPI, admin, true},
		{"api, credential not admitted", pki.ProtoAPI, stranger, false},
		{"api, voter", pki.ProtoAPI, v, true},
		{"api, marked voter Raft does not count", pki.ProtoAPI, x, false},
		{"api, non-voter", pki.ProtoAPI, nv, false},
		{"api, revoked voter", pki.ProtoAPI, rv, false},
		{"api, another cluster's voter", pki.ProtoAPI, foreign, false},
		{"unknown protocol, voter", "h2", v, false},
	}
	for _, c := range cases {
		if got := tr.allow(c.proto, c.cs); got != c.want {
			t.Errorf("%s: allow %v, want %v", c.name, got, c.want)
		}
	}
	// A recovery moves the epoch on: the old Raft protocol is refused.
	f.epoch.Store(2)
	if tr.allow(raft0, v) || !tr.allow(pki.RaftProto(2), v) {
		t.Errorf("at epoch 2: epoch 0's Raft %v, epoch 2's %v", tr.allow(raft0, v), tr.allow(pki.RaftProto(2), v))
	}
	// Revocation counts from the moment the state says so.
	f.state.mu.Lock()
	f.state.revoked["vid"] = true
	f.state.mu.Unlock()
	if tr.allow(pki.ProtoNode, v) || tr.allow(pki.ProtoAPI, v) {
		t.Error("a voter revoked a moment ago is still admitted")
	}
}

// Node calls: who sent one (peerOf, revoked senders being nobody), which
// only voters may make (votersOnly), whether a sender is the node of a
// name (isNode), and how this non-voter names the voters (notVoter).
func TestTrustJudgesNodeCalls(t *testing.T) {
	f := newTrustFixture(t)
	tr := f.trust
	f.openRaft()
	call := func(cert *tls.Certificate) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "https://node/v1/forget", nil)
		if cert != nil {
			r = r.WithContext(context.WithValue(r.Context(), peerStateKey{}, stateOf(t, cert)))
		}
		return r
	}
	if p := tr.peerOf(call(f.nv.Certificate())); p == nil || p.ID != "nvid" {
		t.Errorf("peerOf a non-voter's call: %v", p)
	}
	if p := tr.peerOf(call(f.rv.Certificate())); p != nil {
		t.Errorf("peerOf a revoked node's call: %v, want nobody", p)
	}
	if p := tr.peerOf(call(nil)); p != nil {
		t.Errorf("peerOf a call without TLS state: %v", p)
	}

	for _, c := range []struct {
		name   string
		cert   *tls.Certificate
		served bool
	}{{"voter", f.v.Certificate(), true}, {"non-voter", f.nv.Certificate(), false},
		{"marked voter Raft does not count", f.x.Certificate(), false}, {"revoked voter", f.rv.Certificate(), false}} {
		served := false
		rec := httptest.NewRecorder()
		tr.votersOnly(func(http.ResponseWriter, *http.Request) { served = true })(rec, call(c.cert))
		if served != c.served {
			t.Errorf("votersOnly, %s: served %v, want %v", c.name, served, c.served)
		}
		if !c.served && rec.Code != http.StatusForbidden {
			t.Errorf("votersOnly, %s: status %d, want 403", c.name, rec.Code)
		}
	}

	for _, c := range []struct {
		peer pki.NodeIdentity
		name string
		want bool
	}{
		{pki.NodeIdentity{Name: "nv", ID: "nvid"}, "nv", true},
		{pki.NodeIdentity{Name: "nv", ID: "other"}, "nv", false}, // the name belongs to another node
		{pki.NodeIdentity{Name: "nv", ID: "nvid"}, "v", false},
		{pki.NodeIdentity{Name: "new", ID: "newid"}, "new", true}, // not registered yet
	} {
		if got := tr.isNode(c.peer, c.name); got != c.want {
			t.Errorf("isNode(%s/%s, %q) = %v, want %v", c.peer.Name, c.peer.ID, c.name, got, c.want)
		}
	}

	if !tr.isVoter("vid") || tr.isVoter("nvid") || tr.isVoter("self") || tr.isVoter("xid") {
		t.Errorf("isVoter: vid %v nvid %v self %v xid %v", tr.isVoter("vid"), tr.isVoter("nvid"), tr.isVoter("self"), tr.isVoter("xid"))
	}
	refused := fmt.Errorf("%w: node self is not a voter", api.ErrForbidden)
	var nve *api.NotVoterError
	if err := tr.asNotVoter(refused); !errors.As(err, &nve) || nve.Node != "self" ||
		!slices.Equal(nve.Voters, []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.4:7000"}) {
		t.Errorf("asNotVoter of the leader's refusal: %#v", err)
	}
	if other := errors.New("disk full"); tr.asNotVoter(other) != other {
		t.Error("asNotVoter changed an error that is no refusal")
	}
}

// A peer the port turns down hears why in a 403 it can read, over real
// TLS on a real cluster port whose TLS configuration is the material's.
func TestTrustRefusesWithReasons(t *testing.T) {
	f := newTrustFixture(t)
	f.openRaft()
	mat := &material{ident: f.self}
	p, err := port.Listen(port.Config{Addr: "127.0.0.1:0", TLS: mat.serverTLS(f.epoch), Allow: f.trust.allow,
		Refuse: f.trust.refuse, Route: routeProto, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	addr := p.Addr().String()
	ask := func(conf *tls.Config) (int, api.WireError, error) {
		c, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			return 0, api.WireError{}, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /v1/nodes HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, api.WireError{}, err
		}
		defer resp.Body.Close()
		var we api.WireError
		err = json.NewDecoder(resp.Body).Decode(&we)
		return resp.StatusCode, we, err
	}
	pinned := func(cert tls.Certificate) *tls.Config {
		return pki.PinnedConfig(f.ca.Fingerprint(), pki.ProtoAPI, "the test", &cert)
	}
	for _, c := range []struct {
		name string
		conf *tls.Config
		kind string
		says string
	}{
		{"a non-voter", f.nv.ClientConfig(pki.ProtoAPI, nil), api.KindForbidden, "node nv is not a voter"},
		{"a revoked node", f.rv.ClientConfig(pki.ProtoAPI, nil), api.KindRemoved, "node rv (rvid) is no longer in this cluster"},
		{"a credential not admitted", pinned(f.stranger), api.KindInvalid, "does not admit that credential"},
	} {
		code, we, err := ask(c.conf)
		if err != nil || code != http.StatusForbidden || we.Kind != c.kind || !strings.Contains(we.Message, c.says) {
			t.Errorf("%s: %d %s %q (%v), want 403 %s saying %q", c.name, code, we.Kind, we.Message, err, c.kind, c.says)
		}
	}
	f.state.mu.Lock()
	f.state.secrets = nil
	f.state.mu.Unlock()
	if code, we, err := ask(pinned(f.admin)); err != nil || code != http.StatusForbidden || !strings.Contains(we.Message, "has not received its cluster's state yet") {
		t.Errorf("before the state arrived: %d %q (%v)", code, we.Message, err)
	}

	// An admitted peer reaches its protocol's listener; Raft's protocol is
	// the epoch's, offered from the handshake on which it moved.
	reached := func(proto, listener string, conf *tls.Config) error {
		accepted := make(chan error, 1)
		go func() {
			c, err := p.Listener(listener).Accept()
			if err == nil {
				c.Close()
			}
			accepted <- err
		}()
		c, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			return err
		}
		defer c.Close()
		select {
		case err := <-accepted:
			return err
		case <-time.After(5 * time.Second):
			return fmt.Errorf("%s: no connection reached the %s listener", proto, listener)
		}
	}
	if err := reached(pki.ProtoAPI, pki.ProtoAPI, f.v.ClientConfig(pki.ProtoAPI, nil)); err != nil {
		t.Errorf("a voter on the API: %v", err)
	}
	if _, err := tls.Dial("tcp", addr, f.v.ClientConfig(pki.RaftProto(3), nil)); err == nil {
		t.Error("epoch 3's Raft protocol was offered at epoch 0")
	}
	f.epoch.Store(3)
	if err := reached(pki.RaftProto(3), pki.ProtoRaft, f.v.ClientConfig(pki.RaftProto(3), nil)); err != nil {
		t.Errorf("a voter on epoch 3's Raft at epoch 3: %v", err)
	}
}

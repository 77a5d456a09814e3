package cluster

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/cluster/port"
	"github.com/shoal-edge/shoal/store"
)

// Who may do what. The admin credential may do anything. Voters are
// trusted: they hold the cluster's keys and could mint certificates
// anyway. Non-voters are untrusted devices, which get stolen: each may do
// its own job and no more. The rules, each in one place:
//
//   - the cluster port's Raft protocol admits only certificates with the
//     voter marker, which only holders of the CA key can issue
//     (votercert.go): a non-voter can neither lead nor stand for election;
//   - the cluster port's API protocol admits the admin credential and the
//     certificates of current voters (allow); a non-voter's certificate is
//     refused with a 403 that says why (refuse);
//   - the node protocol admits every node, and each call says whom it
//     serves: forwarded writes and forget only a voter (votersOnly, in the
//     routes of internalServers); leave and instance reports only the
//     calling node itself (serveLeave, reports.serve, with peerOf); read
//     index and the cluster's ps any node;
//   - a non-voter therefore cannot pass a cluster write on, nor reach
//     another node's API: it refuses those with api.NotVoterError, which
//     names the voters, so that a client holding the admin credential takes
//     the request there (asNotVoter, Where).
//
// A voter is a voter in this node's latest Raft configuration (isVoter),
// read per request on the node protocol and per connection on the API.

// trust holds these rules: it decides what a cluster-port peer may speak
// (allow, refuse), who sent a node call (peerOf, isNode), and which calls
// only voters may make (votersOnly, asNotVoter, notVoter). It keeps no
// state of its own: each answer reads the replicated state and Raft's
// configuration as they are, so it is safe for concurrent use.
type trust struct {
	self  identity
	ident *pki.Identity
	state trustState
	raft  runningRaft // r() is nil until Raft opens (openingRaft)
	epoch epochSource
	log   *slog.Logger // bounded: strangers cause these lines
}

// trustState is what the replicated state says of trust.
type trustState interface {
	// Secrets holds the admitted admin keys.
	Secrets() (store.Secrets, bool, error)
	// Revoked says whether a node id was refused for good.
	Revoked(id string) bool
	// Nodes is the registry, which says which node holds a name (isNode).
	Nodes() ([]store.NodeRecord, error)
}

// epochSource is the cluster's current epoch (epoch.go), which a rejoin
// moves on.
type epochSource interface {
	Load() uint64
}

var (
	_ trustState  = (*store.Store)(nil)
	_ epochSource = (*atomic.Uint64)(nil)
	_ runningRaft = (*openingRaft)(nil)
)

func newTrust(self identity, ident *pki.Identity, state trustState, r runningRaft, epoch epochSource, log *slog.Logger) *trust {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &trust{self: self, ident: ident, state: state, raft: r, epoch: epoch, log: log}
}

// openingRaft is Raft for a part that is made before Raft opens: the
// cluster port admits connections from the moment it listens, and Raft
// opens on it afterwards. Until open, r is nil.
type openingRaft struct {
	parts atomic.Pointer[raftParts]
}

// open hands over Raft once it runs.
func (o *openingRaft) open(p *raftParts) { o.parts.Store(p) }

func (o *openingRaft) r() *raft.Raft {
	if p := o.parts.Load(); p != nil {
		return p.r()
	}
	return nil
}

// adminAdmitted says whether pub is an admitted admin key.
func (t *trust) adminAdmitted(pub ed25519.PublicKey) bool {
	sec, ok, err := t.state.Secrets()
	if err != nil || !ok {
		return false
	}
	return slices.ContainsFunc(sec.AdminKeys, func(k []byte) bool { return pub.Equal(ed25519.PublicKey(k)) })
}

// isVoter says whether node id is a voter in this node's latest Raft
// configuration.
func (t *trust) isVoter(id string) bool {
	r := t.raft.r()
	if r == nil {
		return false
	}
	f := r.GetConfiguration()
	return f.Error() == nil && isVoterIn(f.Configuration(), id)
}

// allow decides what a cluster-port peer may speak: Raft is for voter
// certificates (votercert.go), node calls for nodes (each node call checks
// whom it serves), the API for the admin credential and voters, joining
// for anyone who knows the secret (checked by the join handler).
func (t *trust) allow(proto string, cs tls.ConnectionState) bool {
	if proto == pki.ProtoJoin {
		return true
	}
	p := t.ident.Peer(cs, t.adminAdmitted)
	if p.Node != nil && t.state.Revoked(p.Node.ID) {
		return false
	}
	switch {
	case proto == pki.RaftProto(t.epoch.Load()):
		if p.Node != nil && !p.Node.Voter {
			t.log.Warn("refused Raft from a node without a voter certificate", "name", p.Node.Name, "id", p.Node.ID)
		}
		return p.Node != nil && p.Node.Voter
	case proto == pki.ProtoNode:
		return p.Node != nil
	case proto == pki.ProtoAPI:
		return p.Admin || p.Node != nil && t.isVoter(p.Node.ID)
	}
	return false
}

// refuse answers an HTTP peer that allow turned down, so that a remote CLI
// says why instead of "EOF".
func (t *trust) refuse(proto string, c net.Conn) {
	if proto != pki.ProtoAPI && proto != pki.ProtoNode {
		return
	}
	_, hasSecrets, _ := t.state.Secrets()
	we := api.WireError{Kind: api.KindInvalid, Message: "this node does not admit that credential: it is not an admin credential or node certificate of this cluster, or it was revoked"}
	if tc, ok := c.(*tls.Conn); ok {
		switch p := t.ident.Peer(tc.ConnectionState(), nil); {
		case p.Node != nil && t.state.Revoked(p.Node.ID):
			// Said plainly, so that a node forgotten while it was away
			// learns it (askMember) and stops its containers.
			we = api.WireError{Kind: api.KindRemoved, Message: fmt.Sprintf(
				"node %s (%s) is no longer in this cluster: it left or was forgotten, and its identity is revoked", p.Node.Name, p.Node.ID)}
		case p.Node != nil:
			we = api.WireError{Kind: api.KindForbidden, Message: fmt.Sprintf(
				"node %s is not a voter: a non-voter's certificate may not use the API; the admin credential (--credential) may", p.Node.Name)}
		}
	}
	if !hasSecrets {
		we.Message = "this node has not received its cluster's state yet and admits no credential: try again in a moment, or another node"
	}
	body, _ := json.Marshal(we)
	// The request is read before the answer and the connection drained
	// after it: a socket closed with unread bytes sends a reset, and a
	// reset can reach the client before it read the answer, which it then
	// reports as a broken connection. Both are bounded in bytes here and
	// in time by the port's deadline.
	in := io.LimitReader(c, refuseReadMax)
	_ = c.SetReadDeadline(time.Now().Add(refuseReadWait))
	if req, err := http.ReadRequest(bufio.NewReader(in)); err == nil {
		_, _ = io.Copy(io.Discard, req.Body)
	}
	fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = c.SetReadDeadline(time.Now().Add(refuseReadWait))
		_, _ = io.Copy(io.Discard, in)
	}
}

// refuseReadMax and refuseReadWait bound what a refused peer may make
// refuse read, and how long it waits for it.
const (
	refuseReadMax  = 64 << 10
	refuseReadWait = 400 * time.Millisecond
)

type peerStateKey struct{}

// withPeerState keeps a cluster-port connection's TLS state in its
// requests' context: handlers that act for the calling node check who it is.
func withPeerState(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*port.Conn); ok {
		return context.WithValue(ctx, peerStateKey{}, pc.State)
	}
	return ctx
}

// peerOf is the node that sent r over the node protocol, nil if it is
// revoked: the port checks revocation when a connection opens, and a
// connection kept alive outlives it.
func (t *trust) peerOf(r *http.Request) *pki.NodeIdentity {
	cs, ok := r.Context().Value(peerStateKey{}).(tls.ConnectionState)
	if !ok {
		return nil
	}
	if p := t.ident.Peer(cs, nil).Node; p != nil && !t.state.Revoked(p.ID) {
		return p
	}
	return nil
}

// votersOnly serves a node call that acts on the cluster (a forwarded
// write, forget) for a current voter only. It is checked per request: a
// pooled connection outlives a demotion.
func (t *trust) votersOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		peer := t.peerOf(r)
		if peer == nil || !t.isVoter(peer.ID) {
			name := "?"
			if peer != nil {
				name = peer.Name
			}
			t.log.Warn("refused a node call from a non-voter", "path", r.URL.Path, "node", name, "remote", r.RemoteAddr)
			writeWireError(w, http.StatusForbidden, fmt.Errorf("%w: node %s is not a voter: only voters pass cluster writes on", api.ErrForbidden, name))
			return
		}
		h(w, r)
	}
}

// asNotVoter turns the leader's refusal of a node call from this node,
// a non-voter, into the error its client can act on: where the voters are.
// A voter whose promotion the leader has not yet heard of keeps the
// leader's word.
func (t *trust) asNotVoter(err error) error {
	var nv *api.NotVoterError
	if !errors.Is(err, api.ErrForbidden) || errors.As(err, &nv) || t.isVoter(t.self.ID) {
		return err
	}
	return t.notVoter()
}

// notVoter refuses what only the admin credential or a voter may ask of
// this node, naming the voters' cluster ports, the leader first.
func (t *trust) notVoter() error {
	e := &api.NotVoterError{Node: t.self.Name}
	r := t.raft.r()
	if r == nil {
		return e
	}
	leader, _ := r.LeaderWithID()
	if leader != "" {
		_, hp := splitRaftAddr(leader)
		e.Voters = append(e.Voters, hp)
	}
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter && s.Address != leader {
				_, hp := splitRaftAddr(s.Address)
				e.Voters = append(e.Voters, hp)
			}
		}
	}
	return e
}

// isNode says whether peer is the node called name: the name its
// certificate carries, and the registry's node of that name if it knows
// one (a name passes to a new node only once the old one is revoked).
func (t *trust) isNode(peer pki.NodeIdentity, name string) bool {
	if peer.Name != name {
		return false
	}
	recs, err := t.state.Nodes()
	if err != nil {
		return false
	}
	for _, r := range recs {
		if r.Name == name {
			return r.ID == peer.ID
		}
	}
	return true
}

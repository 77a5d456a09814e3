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
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/cluster/port"
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

// adminAdmitted says whether pub is an admitted admin key.
func (n *Node) adminAdmitted(pub ed25519.PublicKey) bool {
	sec, ok, err := n.store.Secrets()
	if err != nil || !ok {
		return false
	}
	return slices.ContainsFunc(sec.AdminKeys, func(k []byte) bool { return pub.Equal(ed25519.PublicKey(k)) })
}

// isVoter says whether node id is a voter in this node's latest Raft
// configuration.
func (n *Node) isVoter(id string) bool {
	f := n.raft.r().GetConfiguration()
	return f.Error() == nil && isVoterIn(f.Configuration(), id)
}

// allow decides what a cluster-port peer may speak: Raft is for voter
// certificates (votercert.go), node calls for nodes (each node call checks
// whom it serves), the API for the admin credential and voters, joining
// for anyone who knows the secret (checked by the join handler).
func (n *Node) allow(proto string, cs tls.ConnectionState) bool {
	if proto == pki.ProtoJoin {
		return true
	}
	p := n.mat.ident.Peer(cs, n.adminAdmitted)
	if p.Node != nil && n.store.Revoked(p.Node.ID) {
		return false
	}
	switch {
	case proto == pki.RaftProto(n.epoch.Load()):
		if p.Node != nil && !p.Node.Voter {
			n.peerLog.Warn("refused Raft from a node without a voter certificate", "name", p.Node.Name, "id", p.Node.ID)
		}
		return p.Node != nil && p.Node.Voter
	case proto == pki.ProtoNode:
		return p.Node != nil
	case proto == pki.ProtoAPI:
		return p.Admin || p.Node != nil && n.isVoter(p.Node.ID)
	}
	return false
}

// refuse answers an HTTP peer that allow turned down, so that a remote CLI
// says why instead of "EOF".
func (n *Node) refuse(proto string, c net.Conn) {
	if proto != pki.ProtoAPI && proto != pki.ProtoNode {
		return
	}
	_, hasSecrets, _ := n.store.Secrets()
	we := api.WireError{Kind: api.KindInvalid, Message: "this node does not admit that credential: it is not an admin credential or node certificate of this cluster, or it was revoked"}
	if tc, ok := c.(*tls.Conn); ok {
		switch p := n.mat.ident.Peer(tc.ConnectionState(), nil); {
		case p.Node != nil && n.store.Revoked(p.Node.ID):
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
func (n *Node) peerOf(r *http.Request) *pki.NodeIdentity {
	cs, ok := r.Context().Value(peerStateKey{}).(tls.ConnectionState)
	if !ok {
		return nil
	}
	if p := n.mat.ident.Peer(cs, nil).Node; p != nil && !n.store.Revoked(p.ID) {
		return p
	}
	return nil
}

// votersOnly serves a node call that acts on the cluster (a forwarded
// write, forget) for a current voter only. It is checked per request: a
// pooled connection outlives a demotion.
func (n *Node) votersOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		peer := n.peerOf(r)
		if peer == nil || !n.isVoter(peer.ID) {
			name := "?"
			if peer != nil {
				name = peer.Name
			}
			n.peerLog.Warn("refused a node call from a non-voter", "path", r.URL.Path, "node", name, "remote", r.RemoteAddr)
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
func (n *Node) asNotVoter(err error) error {
	var nv *api.NotVoterError
	if !errors.Is(err, api.ErrForbidden) || errors.As(err, &nv) || n.isVoter(n.id.ID) {
		return err
	}
	return n.notVoter()
}

// notVoter refuses what only the admin credential or a voter may ask of
// this node, naming the voters' cluster ports, the leader first.
func (n *Node) notVoter() error {
	e := &api.NotVoterError{Node: n.id.Name}
	r := n.raft.r()
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
func (n *Node) isNode(peer pki.NodeIdentity, name string) bool {
	if peer.Name != name {
		return false
	}
	recs, err := n.store.Nodes()
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

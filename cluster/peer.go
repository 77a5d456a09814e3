package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/pki"
)

// Every outbound connection to another node says which node it means and
// checks that the certificate it meets names that node and is not revoked:
// an address may have passed to another device (DHCP), and a node's
// certificate stays CA-signed after it is revoked.
//
// Raft server addresses carry the node id: "ID@HOST:PORT". Raft passes
// them around opaquely (the leader's own arrives with every heartbeat), so
// a dial always knows whom it expects. Plain "HOST:PORT" addresses, from
// before ids were carried, are still dialled, checked against the CA only.

// raftAddr is a Raft server address for node id at hostport.
func raftAddr(id, hostport string) raft.ServerAddress {
	return raft.ServerAddress(id + "@" + hostport)
}

// splitRaftAddr parses a Raft server address; id is empty for a plain one.
func splitRaftAddr(a raft.ServerAddress) (id, hostport string) {
	if id, hp, ok := strings.Cut(string(a), "@"); ok {
		return id, hp
	}
	return "", string(a)
}

// peerAddr is the advertised address of this node's Raft transport.
type peerAddr struct {
	id string
	net.Addr
}

func (a peerAddr) String() string { return a.id + "@" + a.Addr.String() }

// expectPeer checks the node a certificate names: it must be want (when
// known) and not revoked.
func (n *Node) expectPeer(want string) func(pki.NodeIdentity) error {
	return func(got pki.NodeIdentity) error {
		if want != "" && got.ID != want {
			return fmt.Errorf("reached node %s (%s), not the node meant (%s): its address has changed hands", got.Name, got.ID, want)
		}
		if n.store.Revoked(got.ID) {
			return fmt.Errorf("node %s (%s) is revoked", got.Name, got.ID)
		}
		return nil
	}
}

// dialError is a failed dial: nothing was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dialNode opens a TLS connection with proto to the node of Raft address
// addr.
func (n *Node) dialNode(ctx context.Context, addr raft.ServerAddress, proto string, timeout time.Duration) (net.Conn, error) {
	id, hp := splitRaftAddr(addr)
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: n.mat.ident.ClientConfig(proto, n.expectPeer(id))}
	c, err := d.DialContext(ctx, "tcp", hp)
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

type expectedPeerKey struct{}

// newNodeClient is the HTTP client of the node protocol: the node each
// request means rides in its context (see nodeRequest).
func (n *Node) newNodeClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			addr, _ := ctx.Value(expectedPeerKey{}).(raft.ServerAddress)
			// Short: a leader that lost power must not hold a write for
			// long when the next one is elected within a second.
			return n.dialNode(ctx, addr, pki.ProtoNode, 2*time.Second)
		},
		IdleConnTimeout: time.Minute,
	}}
}

// nodeRequest calls path on the node of Raft address addr over the node
// protocol.
func (n *Node) nodeRequest(ctx context.Context, method string, addr raft.ServerAddress, path string, body io.Reader) (*http.Response, error) {
	_, hp := splitRaftAddr(addr)
	ctx = context.WithValue(ctx, expectedPeerKey{}, addr)
	req, err := http.NewRequestWithContext(ctx, method, "https://"+hp+path, body)
	if err != nil {
		return nil, err
	}
	return n.nodeClient.Do(req)
}

// peerTransport reaches the API of node id (name) at hostport, for
// passing a request about instance on to it; one use, no pooled
// connections. A node that does not answer is api.ErrUnreachable, named.
func (n *Node) peerTransport(id, name, instance string) http.RoundTripper {
	return &http.Transport{
		DisableKeepAlives: true,
		DialTLSContext: func(ctx context.Context, _, hp string) (net.Conn, error) {
			c, err := n.dialNode(ctx, raftAddr(id, hp), pki.ProtoAPI, peerDialTimeout)
			if err != nil {
				return nil, unreachable(name, instance, hp, err)
			}
			return c, nil
		},
	}
}

// peerDialTimeout bounds a dial of another node's API.
const peerDialTimeout = 5 * time.Second

// unreachable says that node name, which runs instance, did not answer at
// hostport, and why in a few words.
func unreachable(name, instance, hostport string, err error) error {
	why := err.Error()
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "connection refused: shoal is not running there"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		why = "no route to it"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		why = fmt.Sprintf("no answer within %s", peerDialTimeout)
	}
	return fmt.Errorf("node %s, which runs %s, is %w: its cluster port %s did not answer (%s); it is down or cut off (`shoal nodes` shows its state)",
		name, instance, api.ErrUnreachable, hostport, why)
}

package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// Protocols on the cluster port, told apart by ALPN during the handshake.
const (
	ProtoRaft = "shoal-raft/1" // Raft RPCs; voter certificates only
	ProtoAPI  = "shoal-api/1"  // the HTTP API; nodes and admins
	ProtoNode = "shoal-node/1" // calls between nodes (forwarded writes); nodes only
	ProtoJoin = "shoal-join/1" // joining; no client certificate yet
)

// RaftProto is the Raft protocol of a cluster lineage: epoch 0 at
// bootstrap, one more after every `shoal recover`. Nodes of different
// epochs share no ALPN protocol for Raft, so a node that missed a recovery
// can neither vote in the recovered cluster nor lead it astray.
func RaftProto(epoch uint64) string {
	if epoch == 0 {
		return ProtoRaft
	}
	return ProtoRaft + "+e" + strconv.FormatUint(epoch, 10)
}

// IsRaftProto reports whether p is a Raft protocol of some epoch.
func IsRaftProto(p string) bool { return p == ProtoRaft || strings.HasPrefix(p, ProtoRaft+"+e") }

// Identity is a node's TLS identity: its key and certificate, and the
// cluster CA it trusts. The certificate may be replaced while the node
// runs (a voter's marker comes and goes, see Replace); each handshake
// takes the current one.
type Identity struct {
	CA   *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	cur  atomic.Pointer[issued]
}

// issued is a certificate in use and what it says.
type issued struct {
	cert tls.Certificate // leaf, then the CA: pinning clients find it there
	node NodeIdentity
}

// NewIdentity reads a node's certificate, key and CA from PEM and checks
// that they belong together.
func NewIdentity(certPEM, keyPEM, caPEM []byte) (*Identity, error) {
	ca, err := ParseCert(caPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	id := &Identity{CA: ca, key: key, pool: pool}
	is, err := id.check(certPEM)
	if err != nil {
		return nil, err
	}
	id.cur.Store(is)
	return id, nil
}

// check verifies that certPEM is a node certificate of this key signed by
// the CA.
func (id *Identity) check(certPEM []byte) (*issued, error) {
	leaf, err := ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	if !id.key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("node key does not match the node certificate")
	}
	node, err := VerifyNode([]*x509.Certificate{leaf}, id.pool, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	return &issued{cert: tls.Certificate{Certificate: [][]byte{leaf.Raw, id.CA.Raw}, PrivateKey: id.key, Leaf: leaf}, node: node}, nil
}

// Node is who this node's current certificate names.
func (id *Identity) Node() NodeIdentity { return id.cur.Load().node }

// Certificate is the certificate in use, with its key.
func (id *Identity) Certificate() *tls.Certificate { return &id.cur.Load().cert }

// PublicKey is the node's public key, for issuing it a certificate.
func (id *Identity) PublicKey() crypto.PublicKey { return &id.key.PublicKey }

// Replace puts certPEM in use for the next handshakes: a certificate of
// the same node and key, signed by the CA. Connections already open keep
// the certificate they were made with.
func (id *Identity) Replace(certPEM []byte) error {
	is, err := id.check(certPEM)
	if err != nil {
		return err
	}
	if old := id.Node(); is.node.ID != old.ID || is.node.Name != old.Name {
		return fmt.Errorf("the new certificate names node %s (%s), not this node %s (%s)", is.node.Name, is.node.ID, old.Name, old.ID)
	}
	id.cur.Store(is)
	return nil
}

// ServerConfig is the cluster port's: TLS 1.3, a client certificate asked
// for but not required (a joining node has none yet); Peer decides per
// protocol what the client may do.
func (id *Identity) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return id.Certificate(), nil },
		ClientAuth:     tls.RequestClientCert,
		NextProtos:     []string{ProtoRaft, ProtoAPI, ProtoNode, ProtoJoin},
	}
}

// ClientConfig is for dialling another node of the cluster with proto.
// accept, if not nil, decides on the node the server's certificate names
// (the one the caller meant to reach, not revoked).
func (id *Identity) ClientConfig(proto string, accept func(NodeIdentity) error) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return id.Certificate(), nil
		},
		NextProtos: []string{proto},
		// The standard check would match the address against the
		// certificate; nodes are checked by CA and name instead.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := negotiated(cs, proto); err != nil {
				return err
			}
			node, err := VerifyNode(cs.PeerCertificates, id.pool, x509.ExtKeyUsageServerAuth)
			if err == nil && accept != nil {
				err = accept(node)
			}
			return err
		},
	}
}

// PinnedConfig is for a client that knows the cluster only by its CA's
// fingerprint (a joining node, the remote CLI): the server must show a
// node certificate signed by that CA, checked before anything is sent.
// pinnedBy names what gave the fingerprint, for the error when the server
// belongs to another cluster ("the join token", "the admin credential").
// client may be nil.
func PinnedConfig(ca Fingerprint, proto, pinnedBy string, client *tls.Certificate) *tls.Config {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{proto},
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := negotiated(cs, proto); err != nil {
				return err
			}
			err := VerifyPinned(cs.PeerCertificates, ca)
			if errors.Is(err, ErrWrongCluster) {
				return fmt.Errorf("%w than the one %s names", err, pinnedBy)
			}
			return err
		},
	}
	if client != nil {
		c.Certificates = []tls.Certificate{*client}
	}
	return c
}

// ErrWrongCluster means the server's CA is not the one expected.
var ErrWrongCluster = errors.New("the node answering belongs to another cluster (its CA fingerprint differs)")

// VerifyPinned checks that chain[0] is a node certificate signed by a CA in
// the chain whose fingerprint is ca.
func VerifyPinned(chain []*x509.Certificate, ca Fingerprint) error {
	for _, c := range chain[min(1, len(chain)):] {
		if FingerprintOf(c) != ca {
			continue
		}
		pool := x509.NewCertPool()
		pool.AddCert(c)
		_, err := VerifyNode(chain[:1], pool, x509.ExtKeyUsageServerAuth)
		return err
	}
	return ErrWrongCluster
}

func negotiated(cs tls.ConnectionState, proto string) error {
	if cs.NegotiatedProtocol != proto {
		return fmt.Errorf("the other end does not speak %s: not a shoal cluster port, or a shoal too old", proto)
	}
	return nil
}

// Peer is who is on the other end of a cluster-port connection.
type Peer struct {
	Node  *NodeIdentity // a node of this cluster
	Admin bool          // a holder of an admitted admin credential
}

// Peer classifies a connection's client; admitted says whether an admin
// key is in the cluster's admin set. An unknown or absent certificate is
// an anonymous peer, which only the join protocol serves.
func (id *Identity) Peer(cs tls.ConnectionState, admitted func(ed25519.PublicKey) bool) Peer {
	if len(cs.PeerCertificates) == 0 {
		return Peer{}
	}
	if node, err := VerifyNode(cs.PeerCertificates, id.pool, x509.ExtKeyUsageClientAuth); err == nil {
		return Peer{Node: &node}
	}
	// TLS 1.3 has checked the client's signature with this key: holding
	// the credential is proven, its admission is the set's to say.
	if pub, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey); ok && admitted != nil && admitted(pub) {
		return Peer{Admin: true}
	}
	return Peer{}
}

// Certificate makes the self-signed client certificate the remote CLI
// presents; the cluster admits it by its key, not by a signature.
func (c Credential) Certificate() (tls.Certificate, error) {
	key := ed25519.NewKeyFromSeed(c.Seed[:])
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "shoal admin"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("admin certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// Package pki owns the cluster's identities: the cluster CA, the node
// certificates it signs, and the TLS checks built on them. A node is its
// key and certificate, never its address: certificates carry the node's
// name and id, no IP, and peers are verified against the CA alone.
//
// # Basics
//
// Bootstrap makes a CA (NewCA) and a node key and certificate for itself
// (NewKey, CA.Issue). A joining node makes a key and sends its public half
// with the join secret; any node holding the CA signs it. Between nodes,
// ServerConfig and ClientConfig give mutual TLS 1.3; Peer says who is on the
// other end: a node (CA-signed, a voter if its certificate carries the
// voter marker) or an admin (a key in the admin set). A node's
// certificate can be replaced while it runs (Identity.Replace): voters
// issue themselves one with the marker and give it up when demoted.
//
// # Caveats
//
// Certificates are valid from 1950 to 9999: edge devices without a
// real-time clock boot with a wrong date, and a cluster that stops talking
// to itself until NTP answers is worse than one without expiry. Revocation
// is the cluster's (a list of node ids in Raft), not the certificates'.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"
)

// Fingerprint is the SHA-256 of a certificate's DER bytes.
type Fingerprint [32]byte

// FingerprintOf returns cert's fingerprint.
func FingerprintOf(cert *x509.Certificate) Fingerprint { return sha256.Sum256(cert.Raw) }

var (
	notBefore = time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter  = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// CA is the cluster's certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a CA for the cluster named by clusterID.
func NewCA(clusterID string) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "shoal cluster " + clusterID},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// ParseCA reads a CA from PEM.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("CA key does not match the CA certificate")
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Fingerprint is the CA's fingerprint, as the join token carries it.
func (ca *CA) Fingerprint() Fingerprint { return FingerprintOf(ca.Cert) }

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte { return CertPEM(ca.Cert.Raw) }

// KeyPEM returns the CA key in PEM.
func (ca *CA) KeyPEM() []byte { return KeyPEM(ca.Key) }

// Issue signs a node certificate for pub: usable as TLS server and client,
// naming the node by name (CN) and id (URI shoal://node/ID), and for a
// voter marking it as one (URI shoal://voter/ID).
func (ca *CA) Issue(pub crypto.PublicKey, node NodeIdentity) ([]byte, error) {
	if _, ok := pub.(*ecdsa.PublicKey); !ok {
		return nil, fmt.Errorf("node key: want an ECDSA public key, got %T", pub)
	}
	if node.Name == "" || node.ID == "" {
		return nil, errors.New("a node certificate needs a name and an id")
	}
	uris := []*url.URL{nodeURI(node.ID)}
	if node.Voter {
		uris = append(uris, voterURI(node.ID))
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: node.Name},
		URIs:         uris,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate of node %s: %w", node.Name, err)
	}
	return CertPEM(der), nil
}

func nodeURI(id string) *url.URL { return &url.URL{Scheme: "shoal", Host: "node", Path: "/" + id} }

// voterURI marks a voter's certificate. Only a holder of the CA key can
// issue one, and only voters hold it: the marker is what the Raft
// protocol admits, since a node's place in the Raft configuration is not
// something every receiver knows in time (see Voter).
func voterURI(id string) *url.URL { return &url.URL{Scheme: "shoal", Host: "voter", Path: "/" + id} }

// NodeIdentity is who a verified node certificate names.
type NodeIdentity struct {
	Name string
	ID   string
	// Voter: the certificate carries the voter marker. Voters issue it to
	// themselves and trade it for a plain one when demoted; it says the
	// node was made a voter, not that it still is one.
	Voter bool
}

// VerifyNode checks that chain[0] is a node certificate signed by the CA
// in roots and says which node it names.
func VerifyNode(chain []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) (NodeIdentity, error) {
	if len(chain) == 0 {
		return NodeIdentity{}, errors.New("no certificate")
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// No DNSName: identity is the node's certificate, never its address.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return NodeIdentity{}, fmt.Errorf("not signed by this cluster's CA: %w", err)
	}
	var node NodeIdentity
	for _, u := range leaf.URIs {
		if u.Scheme == "shoal" && u.Host == "node" {
			if id := strings.TrimPrefix(u.Path, "/"); id != "" && node.ID == "" {
				node = NodeIdentity{Name: leaf.Subject.CommonName, ID: id}
			}
		}
	}
	if node.ID == "" {
		return NodeIdentity{}, errors.New("certificate names no shoal node")
	}
	for _, u := range leaf.URIs {
		if u.Scheme == "shoal" && u.Host == "voter" && strings.TrimPrefix(u.Path, "/") == node.ID {
			node.Voter = true
		}
	}
	return node, nil
}

// NewKey makes a node key.
func NewKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// ParseCert reads one PEM certificate.
func ParseCert(data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// ParseKey reads a PEM EC private key.
func ParseKey(data []byte) (*ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "EC PRIVATE KEY" {
		return nil, errors.New("no PEM EC private key")
	}
	return x509.ParseECPrivateKey(b.Bytes)
}

// CertPEM encodes DER as a PEM certificate.
func CertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// KeyPEM encodes an EC key as PEM.
func KeyPEM(key *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		panic(err) // only for curves Go does not know
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// PublicKeyPEM and ParsePublicKey carry a joining node's public key.
func PublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey reads a PEM public key.
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("no PEM public key")
	}
	return x509.ParsePKIXPublicKey(b.Bytes)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

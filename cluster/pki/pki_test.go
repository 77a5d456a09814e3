package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

func newNode(t *testing.T, ca *CA, name, id string) *Identity {
	t.Helper()
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(&key.PublicKey, NodeIdentity{Name: name, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	ident, err := NewIdentity(certPEM, KeyPEM(key), ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	return ident
}

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestTokenRoundTrip(t *testing.T) {
	ca := newCA(t)
	tok := Token{CA: ca.Fingerprint(), Secret: NewSecret(), Addrs: []string{"10.0.0.1:7947", "[fd00::1]:7947"}}
	got, err := ParseToken(tok.String())
	if err != nil {
		t.Fatal(err)
	}
	if got.CA != tok.CA || !SecretMatches(got.Secret, tok.Secret) || strings.Join(got.Addrs, ",") != strings.Join(tok.Addrs, ",") {
		t.Fatalf("round trip: got %+v, want %+v", got, tok)
	}
}

func TestTokenDamage(t *testing.T) {
	tok := Token{CA: newCA(t).Fingerprint(), Secret: NewSecret(), Addrs: []string{"10.0.0.1:7947"}}.String()
	cases := map[string]string{
		"truncated":     tok[:len(tok)-5],
		"cut in half":   tok[:len(tok)/2],
		"one char off":  tok[:20] + string(rune(tok[20]^1)) + tok[21:],
		"not a token":   "hello",
		"credential":    NewCredential(Fingerprint{}).String(),
		"empty":         "",
		"address gone":  strings.Replace(tok, "10.0.0.1:7947", "", 1),
		"extra field":   tok + "/x",
		"another check": tok[:len(tok)-6] + "AAAAAA",
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseToken(s)
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("ParseToken(%q) = %v, want ErrBadToken", s, err)
			}
		})
	}
}

func TestCredentialRoundTrip(t *testing.T) {
	c := NewCredential(newCA(t).Fingerprint())
	got, err := ParseCredential(c.String())
	if err != nil {
		t.Fatal(err)
	}
	if got != c {
		t.Fatal("credential changed in a round trip")
	}
	// The credential is never printed: the error says where it is kept.
	if _, err := ParseCredential(c.String()[:30]); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), "DATA/tls/admin.credential") {
		t.Fatalf("truncated credential: %v, want ErrBadToken naming DATA/tls/admin.credential", err)
	}
}

// handshake runs a TLS handshake over a pipe and returns the server's view
// of the client, or the client's error.
func handshake(t *testing.T, server *tls.Config, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(a, server)
	type res struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan res, 1)
	go func() {
		err := srv.Handshake()
		if err == nil {
			// TLS 1.3 clients finish before the server has read their
			// certificate; a read completes the server's side.
			go io.Copy(io.Discard, srv)
		}
		done <- res{srv.ConnectionState(), err}
	}()
	cl := tls.Client(b, client)
	err := cl.Handshake()
	if err == nil {
		_, err = cl.Write([]byte("x"))
	}
	if err != nil {
		b.Close()
		<-done
		return tls.ConnectionState{}, err
	}
	r := <-done
	return r.cs, r.err
}

func TestMutualTLSBetweenNodes(t *testing.T) {
	ca := newCA(t)
	a := newNode(t, ca, "a", "id-a")
	b := newNode(t, ca, "b", "id-b")
	cs, err := handshake(t, a.ServerConfig(), b.ClientConfig(ProtoRaft, nil))
	if err != nil {
		t.Fatal(err)
	}
	p := a.Peer(cs, nil)
	if p.Node == nil || p.Node.Name != "b" || p.Node.ID != "id-b" {
		t.Fatalf("server sees %+v, want node b", p)
	}
}

// The voter marker travels in the certificate: a node that trades its
// certificate is seen with the new one at the next handshake, and a marker
// naming another node's id, or a certificate of another node, is no use.
func TestVoterCertificate(t *testing.T) {
	ca := newCA(t)
	a := newNode(t, ca, "a", "id-a")
	b := newNode(t, ca, "b", "id-b")
	peerB := func() NodeIdentity {
		t.Helper()
		cs, err := handshake(t, a.ServerConfig(), b.ClientConfig(ProtoRaft, nil))
		if err != nil {
			t.Fatal(err)
		}
		p := a.Peer(cs, nil)
		if p.Node == nil {
			t.Fatal("b is no node")
		}
		return *p.Node
	}
	if peerB().Voter {
		t.Fatal("a plain certificate carries the voter marker")
	}
	issue := func(n NodeIdentity) []byte {
		t.Helper()
		certPEM, err := ca.Issue(b.PublicKey(), n)
		if err != nil {
			t.Fatal(err)
		}
		return certPEM
	}
	if err := b.Replace(issue(NodeIdentity{Name: "b", ID: "id-b", Voter: true})); err != nil {
		t.Fatal(err)
	}
	if got := peerB(); !got.Voter || got.ID != "id-b" || !b.Node().Voter {
		t.Fatalf("after the voter certificate: %+v", got)
	}
	if err := b.Replace(issue(NodeIdentity{Name: "b", ID: "id-b"})); err != nil {
		t.Fatal(err)
	}
	if peerB().Voter {
		t.Fatal("the marker stayed after the plain certificate was put back")
	}
	if err := b.Replace(issue(NodeIdentity{Name: "c", ID: "id-c", Voter: true})); err == nil {
		t.Fatal("a certificate of another node replaced b's")
	}
	if err := b.Replace(CertPEM(a.Certificate().Leaf.Raw)); err == nil {
		t.Fatal("a's certificate replaced b's")
	}

	// A voter marker for another id does not make the node a voter.
	key, _ := NewKey()
	forged, err := ca.Issue(&key.PublicKey, NodeIdentity{Name: "d", ID: "id-d"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := ParseCert(forged)
	leaf.URIs = append(leaf.URIs, voterURI("id-a"))
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	got, err := VerifyNode([]*x509.Certificate{cert}, a.pool, x509.ExtKeyUsageClientAuth)
	if err != nil || got.Voter || got.ID != "id-d" {
		t.Fatalf("a marker naming another node: %+v, %v", got, err)
	}
}

func TestOtherClusterRefused(t *testing.T) {
	a := newNode(t, newCA(t), "a", "id-a")
	stranger := newNode(t, newCA(t), "s", "id-s")
	// A node of another cluster dialling in is anonymous: no node rights.
	cs, err := handshake(t, a.ServerConfig(), stranger.ClientConfig(ProtoAPI, nil))
	if err == nil {
		t.Fatal("client accepted a server of another cluster")
	}
	cs, err = handshake(t, a.ServerConfig(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{ProtoAPI}, Certificates: []tls.Certificate{*stranger.Certificate()}})
	if err != nil {
		t.Fatal(err)
	}
	if p := a.Peer(cs, nil); p.Node != nil || p.Admin {
		t.Fatalf("a stranger's certificate gave %+v", p)
	}
}

func TestPinnedClient(t *testing.T) {
	ca := newCA(t)
	a := newNode(t, ca, "a", "id-a")
	if _, err := handshake(t, a.ServerConfig(), PinnedConfig(ca.Fingerprint(), ProtoJoin, "the join token", nil)); err != nil {
		t.Fatalf("pinned to the right CA: %v", err)
	}
	_, err := handshake(t, a.ServerConfig(), PinnedConfig(newCA(t).Fingerprint(), ProtoJoin, "the join token", nil))
	if err == nil || !strings.Contains(err.Error(), ErrWrongCluster.Error()) {
		t.Fatalf("pinned to another CA: %v, want %v", err, ErrWrongCluster)
	}
}

func TestAdminCredential(t *testing.T) {
	ca := newCA(t)
	a := newNode(t, ca, "a", "id-a")
	cred := NewCredential(ca.Fingerprint())
	cert, err := cred.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := handshake(t, a.ServerConfig(), PinnedConfig(cred.CA, ProtoAPI, "the admin credential", &cert))
	if err != nil {
		t.Fatal(err)
	}
	admitted := func(k ed25519.PublicKey) bool { return k.Equal(cred.PublicKey()) }
	if p := a.Peer(cs, admitted); !p.Admin {
		t.Fatal("admitted credential not recognised")
	}
	other := NewCredential(ca.Fingerprint())
	cert2, _ := other.Certificate()
	cs, err = handshake(t, a.ServerConfig(), PinnedConfig(cred.CA, ProtoAPI, "the admin credential", &cert2))
	if err != nil {
		t.Fatal(err)
	}
	if p := a.Peer(cs, admitted); p.Admin || p.Node != nil {
		t.Fatalf("unknown credential gave %+v", p)
	}
}

func TestIdentityMismatch(t *testing.T) {
	ca := newCA(t)
	key, _ := NewKey()
	other, _ := NewKey()
	certPEM, err := ca.Issue(&key.PublicKey, NodeIdentity{Name: "a", ID: "id-a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewIdentity(certPEM, KeyPEM(other), ca.CertPEM()); err == nil {
		t.Fatal("a key that does not match the certificate was accepted")
	}
	if _, err := NewIdentity(certPEM, KeyPEM(key), newCA(t).CertPEM()); err == nil {
		t.Fatal("a certificate of another CA was accepted")
	}
}

// A sealed join secret opens with its CA's key only; a flipped byte or
// another cluster's CA is refused.
func TestSealSecret(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	secret := NewSecret()
	sealed, err := ca.SealSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), string(secret)) {
		t.Fatal("the sealed form holds the secret in clear")
	}
	got, err := ca.OpenSecret(sealed)
	if err != nil || string(got) != string(secret) {
		t.Fatalf("open = %x, %v; want %x", got, err, secret)
	}
	if _, err := other.OpenSecret(sealed); !errors.Is(err, ErrUnseal) {
		t.Errorf("another CA opened it: %v", err)
	}
	damaged := append([]byte(nil), sealed...)
	damaged[len(damaged)-1] ^= 1
	if _, err := ca.OpenSecret(damaged); !errors.Is(err, ErrUnseal) {
		t.Errorf("a damaged seal opened: %v", err)
	}
	if _, err := ca.OpenSecret(sealed[:5]); !errors.Is(err, ErrUnseal) {
		t.Errorf("a truncated seal opened: %v", err)
	}
}

package port

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/cluster/pki"
)

func identity(t *testing.T, ca *pki.CA, name string) *pki.Identity {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(&key.PublicKey, pki.NodeIdentity{Name: name, ID: "id-" + name})
	if err != nil {
		t.Fatal(err)
	}
	id, err := pki.NewIdentity(cert, pki.KeyPEM(key), ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// echo serves l: each connection gets back what it sends.
func echo(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

func roundTrip(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	return nil
}

func TestPortDispatchesByProtocol(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	srv := identity(t, ca, "a")
	cli := identity(t, ca, "b")
	p, err := Listen(Config{
		Addr: "127.0.0.1:0",
		TLS:  srv.ServerConfig(),
		Allow: func(proto string, cs tls.ConnectionState) bool {
			return proto == pki.ProtoJoin || srv.Peer(cs, nil).Node != nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go echo(p.Listener(pki.ProtoRaft))
	go echo(p.Listener(pki.ProtoJoin))
	addr := p.Addr().String()

	if err := roundTrip(addr, cli.ClientConfig(pki.ProtoRaft, nil)); err != nil {
		t.Fatalf("node on raft: %v", err)
	}
	if err := roundTrip(addr, pki.PinnedConfig(ca.Fingerprint(), pki.ProtoJoin, "the join token", nil)); err != nil {
		t.Fatalf("anonymous on join: %v", err)
	}
	if err := roundTrip(addr, pki.PinnedConfig(ca.Fingerprint(), pki.ProtoRaft, "the join token", nil)); err == nil {
		t.Fatal("anonymous peer was served raft")
	}
	// Nobody listens for the API here: the connection is closed.
	if err := roundTrip(addr, cli.ClientConfig(pki.ProtoAPI, nil)); err == nil {
		t.Fatal("a protocol without a listener was served")
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Listener(pki.ProtoRaft).Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
	if err := roundTrip(addr, cli.ClientConfig(pki.ProtoRaft, nil)); err == nil {
		t.Fatal("served after Close")
	}
}

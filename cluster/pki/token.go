package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Token is what `shoal up --join` needs: how to recognise the cluster (its
// CA's fingerprint), the secret that admits a node, and where to reach it.
//
// Text form: shoal1/FINGERPRINT/SECRET/ADDR[,ADDR...]/CHECK, base64url
// without padding, where CHECK is the first 4 bytes of the SHA-256 of all
// before it, so a token cut short or mistyped is told apart from a wrong one.
type Token struct {
	CA     Fingerprint
	Secret []byte
	Addrs  []string // host:port of the cluster port
}

const (
	tokenPrefix = "shoal1"
	credPrefix  = "shoal-admin1"
	secretLen   = 24
)

// NewSecret makes a join secret.
func NewSecret() []byte {
	b := make([]byte, secretLen)
	rand.Read(b)
	return b
}

var b64 = base64.RawURLEncoding

func (t Token) String() string {
	body := strings.Join([]string{tokenPrefix, b64.EncodeToString(t.CA[:]), b64.EncodeToString(t.Secret), strings.Join(t.Addrs, ",")}, "/")
	return body + "/" + check(body)
}

func check(body string) string {
	sum := sha256.Sum256([]byte(body))
	return b64.EncodeToString(sum[:4])
}

// ErrBadToken is wrapped by every ParseToken and ParseCredential error.
var ErrBadToken = errors.New("copy it again whole")

// ParseToken reads a token's text form.
func ParseToken(s string) (Token, error) {
	t, err := parseToken(s)
	if err != nil {
		return t, fmt.Errorf("%w, as `shoal token` on a voter prints it", err)
	}
	return t, nil
}

func parseToken(s string) (Token, error) {
	var t Token
	parts, err := split(strings.TrimSpace(s), tokenPrefix, 5, "join token")
	if err != nil {
		return t, err
	}
	if err := decodeFixed(parts[1], t.CA[:], "CA fingerprint"); err != nil {
		return t, err
	}
	secret, err := b64.DecodeString(parts[2])
	if err != nil || len(secret) != secretLen {
		return t, fmt.Errorf("join token: the secret is damaged: %w", ErrBadToken)
	}
	t.Secret = secret
	for _, a := range strings.Split(parts[3], ",") {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || port == "" {
			return t, fmt.Errorf("join token: address %q is not HOST:PORT: %w", a, ErrBadToken)
		}
		t.Addrs = append(t.Addrs, a)
	}
	return t, nil
}

// split checks the prefix, the field count and the check field.
func split(s, prefix string, n int, what string) ([]string, error) {
	if !strings.HasPrefix(s, prefix+"/") {
		return nil, fmt.Errorf("not a shoal %s (one starts with %q): %w", what, prefix+"/", ErrBadToken)
	}
	parts := strings.Split(s, "/")
	if len(parts) != n {
		return nil, fmt.Errorf("%s is truncated or damaged (%d of %d fields): %w", what, len(parts), n, ErrBadToken)
	}
	body := strings.Join(parts[:n-1], "/")
	if subtle.ConstantTimeCompare([]byte(check(body)), []byte(parts[n-1])) != 1 {
		return nil, fmt.Errorf("%s is truncated or mistyped (its check does not match): %w", what, ErrBadToken)
	}
	return parts, nil
}

func decodeFixed(s string, dst []byte, what string) error {
	b, err := b64.DecodeString(s)
	if err != nil || len(b) != len(dst) {
		return fmt.Errorf("the %s is damaged: %w", what, ErrBadToken)
	}
	copy(dst, b)
	return nil
}

// SecretMatches compares join secrets in constant time.
func SecretMatches(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// Credential is the admin's key for the remote CLI: it names the cluster by
// its CA fingerprint (the CLI checks the node it dials against it) and
// holds an Ed25519 private key whose public half the cluster admits.
//
// Text form: shoal-admin1/FINGERPRINT/SEED/CHECK.
type Credential struct {
	CA   Fingerprint
	Seed [ed25519.SeedSize]byte
}

// NewCredential makes an admin credential for the cluster whose CA has
// fingerprint ca.
func NewCredential(ca Fingerprint) Credential {
	c := Credential{CA: ca}
	rand.Read(c.Seed[:])
	return c
}

func (c Credential) String() string {
	body := strings.Join([]string{credPrefix, b64.EncodeToString(c.CA[:]), b64.EncodeToString(c.Seed[:])}, "/")
	return body + "/" + check(body)
}

// PublicKey is what the cluster stores to admit this credential.
func (c Credential) PublicKey() ed25519.PublicKey {
	return ed25519.NewKeyFromSeed(c.Seed[:]).Public().(ed25519.PublicKey)
}

// ParseCredential reads a credential's text form.
func ParseCredential(s string) (Credential, error) {
	c, err := parseCredential(s)
	if err != nil {
		// Never printed: where it is kept is where to copy it from.
		return c, fmt.Errorf("%w, as the bootstrap node's DATA/tls/admin.credential holds it", err)
	}
	return c, nil
}

func parseCredential(s string) (Credential, error) {
	var c Credential
	parts, err := split(strings.TrimSpace(s), credPrefix, 4, "admin credential")
	if err != nil {
		return c, err
	}
	if err := decodeFixed(parts[1], c.CA[:], "CA fingerprint"); err != nil {
		return c, err
	}
	if err := decodeFixed(parts[2], c.Seed[:], "key"); err != nil {
		return c, err
	}
	return c, nil
}

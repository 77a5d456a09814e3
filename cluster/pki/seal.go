package pki

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
)

// The join secret travels through Raft to every replica, voters and
// non-voters alike, so it is sealed there under a key only the holders of
// the CA's private key (the voters) can derive: a stolen non-voter yields
// neither the CA key nor the secret.

// sealLabel names what the derived key is for: a key derived with another
// label from the same CA key is a different key.
const sealLabel = "shoal join secret v1"

// ErrUnseal is wrapped when a sealed secret does not open: another CA's
// key, or damaged bytes.
var ErrUnseal = errors.New("the sealed join secret does not open with this CA key")

func (ca *CA) sealAEAD() (cipher.AEAD, error) {
	der, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	key, err := hkdf.Key(sha256.New, der, nil, sealLabel, 32)
	if err != nil {
		return nil, fmt.Errorf("derive the sealing key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// SealSecret encrypts a join secret under a key derived from the CA's
// private key (HKDF-SHA256, AES-256-GCM): nonce, then ciphertext. The
// CA's fingerprint is bound in as additional data.
func (ca *CA) SealSecret(secret []byte) ([]byte, error) {
	aead, err := ca.sealAEAD()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	fp := ca.Fingerprint()
	return aead.Seal(nonce, nonce, secret, fp[:]), nil
}

// OpenSecret decrypts what SealSecret made.
func (ca *CA) OpenSecret(sealed []byte) ([]byte, error) {
	aead, err := ca.sealAEAD()
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrUnseal, len(sealed))
	}
	fp := ca.Fingerprint()
	n := aead.NonceSize()
	secret, err := aead.Open(nil, sealed[:n], sealed[n:], fp[:])
	if err != nil {
		return nil, ErrUnseal
	}
	return secret, nil
}

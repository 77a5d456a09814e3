package cluster

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/store"
)

// The node's TLS material lives in DATA/tls, written once at bootstrap or
// join, all of it root-only:
//
//	ca.crt             the cluster CA's certificate
//	node.crt node.key  this node's certificate (signed by the CA) and key
//	gossip.key         memberlist's encryption key (32 bytes)
//	ca.key             voters only: the cluster CA's private key (cakey.go)
//	bootstrap.json     bootstrap only, until the first leader has put it in
//	                   Raft: the cluster id and the sealed secrets
//	                   (store.Secrets)
//	admin.credential   bootstrap only: the admin credential
const (
	tlsDirName     = "tls"
	bootstrapFile  = "bootstrap.json"
	credentialFile = "admin.credential"
	gossipKeyLen   = 32
)

// material is what a node needs to speak on the cluster port and gossip.
type material struct {
	ident     *pki.Identity
	gossipKey []byte
}

func tlsDir(dataDir string) string { return filepath.Join(dataDir, tlsDirName) }

// loadMaterial reads DATA/tls; ok is false when there is none yet.
func loadMaterial(dataDir string) (m *material, ok bool, err error) {
	dir := tlsDir(dataDir)
	read := func(name string) []byte {
		if err != nil {
			return nil
		}
		var b []byte
		b, err = os.ReadFile(filepath.Join(dir, name))
		return b
	}
	caPEM := read("ca.crt")
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	certPEM, keyPEM, gossipKey := read("node.crt"), read("node.key"), read("gossip.key")
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", dir, err)
	}
	ident, err := pki.NewIdentity(certPEM, keyPEM, caPEM)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", dir, err)
	}
	if len(gossipKey) != gossipKeyLen {
		return nil, false, fmt.Errorf("%s/gossip.key: want %d bytes, got %d", dir, gossipKeyLen, len(gossipKey))
	}
	return &material{ident: ident, gossipKey: gossipKey}, true, nil
}

// writeMaterial writes DATA/tls in one rename, so a crash leaves either all
// of it or none. extra holds bootstrap's additional files.
func writeMaterial(dataDir string, certPEM, keyPEM, caPEM, gossipKey []byte, extra map[string][]byte) error {
	dir := tlsDir(dataDir)
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	files := map[string][]byte{"ca.crt": caPEM, "node.crt": certPEM, "node.key": keyPEM, "gossip.key": gossipKey}
	for k, v := range extra {
		files[k] = v
	}
	for name, data := range files {
		if err := writeFileAtomic(filepath.Join(tmp, name), data); err != nil {
			os.RemoveAll(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("write %s: %w", dir, err)
	}
	return nil
}

// bootstrapState is DATA/tls/bootstrap.json.
type bootstrapState struct {
	ClusterID string         `json:"cluster_id"`
	Sealed    *store.Secrets `json:"sealed_secrets,omitempty"`
	// Legacy: the previous release bootstrapped this node and wrote its
	// secrets in clear here; the first leader migrates them.
	Legacy *store.LegacySecrets `json:"secrets,omitempty"`
}

// bootstrapMaterial makes a new cluster's CA, this node's certificate, the
// gossip key, the join secret and the admin credential, and writes them.
func bootstrapMaterial(dataDir string, id identity) (*material, error) {
	var b [16]byte
	rand.Read(b[:])
	clusterID := hex.EncodeToString(b[:])
	ca, err := pki.NewCA(clusterID)
	if err != nil {
		return nil, err
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	certPEM, err := ca.Issue(&key.PublicKey, pki.NodeIdentity{Name: id.Name, ID: id.ID, Voter: true})
	if err != nil {
		return nil, err
	}
	gossipKey := make([]byte, gossipKeyLen)
	rand.Read(gossipKey)
	cred := pki.NewCredential(ca.Fingerprint())
	sealed, err := ca.SealSecret(pki.NewSecret())
	if err != nil {
		return nil, err
	}
	bs := bootstrapState{ClusterID: clusterID, Sealed: &store.Secrets{
		SealedJoinSecret: sealed,
		AdminKeys:        [][]byte{cred.PublicKey()},
	}}
	bsJSON, err := json.Marshal(bs)
	if err != nil {
		return nil, err
	}
	extra := map[string][]byte{bootstrapFile: bsJSON, credentialFile: []byte(cred.String() + "\n"), caKeyFile: ca.KeyPEM()}
	if err := writeMaterial(dataDir, certPEM, pki.KeyPEM(key), ca.CertPEM(), gossipKey, extra); err != nil {
		return nil, err
	}
	m, _, err := loadMaterial(dataDir)
	return m, err
}

// pendingBootstrap reads bootstrap.json, if the first leader has not yet
// put it into Raft.
func pendingBootstrap(dataDir string) (*bootstrapState, error) {
	data, err := os.ReadFile(filepath.Join(tlsDir(dataDir), bootstrapFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var bs bootstrapState
	if err := json.Unmarshal(data, &bs); err != nil {
		return nil, fmt.Errorf("%s: %w", bootstrapFile, err)
	}
	return &bs, nil
}

// serverTLS is the cluster port's TLS configuration: the Raft protocol it
// offers is the epoch's at each handshake, as a rejoin moves it on.
func (m *material) serverTLS(epoch epochSource) *tls.Config {
	base := m.ident.ServerConfig()
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := m.ident.ServerConfig()
		c.NextProtos = []string{pki.RaftProto(epoch.Load()), pki.ProtoAPI, pki.ProtoNode, pki.ProtoJoin}
		return c, nil
	}
	return base
}

// routeProto sends every epoch's Raft protocol to the Raft listener.
func routeProto(proto string) string {
	if pki.IsRaftProto(proto) {
		return pki.ProtoRaft
	}
	return proto
}

// AdminCredentialPath is where bootstrap wrote the admin credential, on
// the node that made the cluster.
func AdminCredentialPath(dataDir string) string {
	return filepath.Join(tlsDir(dataDir), credentialFile)
}

// RemoteTLS is the remote CLI's TLS configuration from an admin
// credential: the credential itself, or a file holding it.
func RemoteTLS(credential string) (*tls.Config, error) {
	text := credential
	if !strings.HasPrefix(text, "shoal-admin1/") {
		data, err := os.ReadFile(credential)
		if err != nil {
			return nil, fmt.Errorf("neither a credential nor a readable file: %w", err)
		}
		text = string(data)
	}
	cred, err := pki.ParseCredential(text)
	if err != nil {
		return nil, err
	}
	cert, err := cred.Certificate()
	if err != nil {
		return nil, err
	}
	return pki.PinnedConfig(cred.CA, pki.ProtoAPI, "the admin credential", &cert), nil
}

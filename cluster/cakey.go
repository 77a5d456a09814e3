package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/store"
)

// The cluster CA's private key lives on the voters only, in DATA/tls/ca.key
// (0600), never in Raft nor in the state file: a stolen non-voter yields no
// key that signs node certificates. The bootstrap node writes it; a node
// that becomes a voter fetches it over the node protocol (GET /v1/ca-key)
// from the leader, or from another voter that holds it, and a node that is
// no voter any more deletes its copy once the leader holds one (so that a
// cluster never loses its last copy to a demotion). Joins and the join
// token need the key: on other nodes they say to use a voter.

const caKeyFile = "ca.key"

// caKeySync is how often a node compares its copy of the CA key with its
// role: promotions and demotions are Raft configuration changes, which
// the state file does not signal.
const caKeySync = time.Second

// caKeeper is this node's copy of the CA key, if any.
type caKeeper struct {
	path string
	cert *x509.Certificate

	mu sync.Mutex // guards following
	ca *pki.CA    // nil without the key
}

// newCAKeeper reads DATA/tls/ca.key if there is one; it must match the
// CA certificate the node trusts.
func newCAKeeper(dataDir string, cert *x509.Certificate) (*caKeeper, error) {
	k := &caKeeper{path: filepath.Join(tlsDir(dataDir), caKeyFile), cert: cert}
	data, err := os.ReadFile(k.path)
	if errors.Is(err, os.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the CA key: %w", err)
	}
	if k.ca, err = pki.ParseCA(pki.CertPEM(cert.Raw), data); err != nil {
		return nil, fmt.Errorf("%s: %w", k.path, err)
	}
	return k, nil
}

// get returns the CA with its key, or nil.
func (k *caKeeper) get() *pki.CA {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ca
}

// put checks that keyPEM is the CA's key and writes it, root-only.
func (k *caKeeper) put(keyPEM []byte) error {
	ca, err := pki.ParseCA(pki.CertPEM(k.cert.Raw), keyPEM)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := writeFileAtomic(k.path, keyPEM); err != nil {
		return fmt.Errorf("write %s: %w", k.path, err)
	}
	k.ca = ca
	return nil
}

// drop deletes this node's copy.
func (k *caKeeper) drop() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := os.Remove(k.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", k.path, err)
	}
	k.ca = nil
	return nil
}

// caKeyAnswer answers GET /v1/ca-key: the key, or why the caller may not
// have it although this node holds it.
type caKeyAnswer struct {
	Key     []byte `json:"key,omitempty"` // PEM
	Refused string `json:"refused,omitempty"`
}

// caKeys keeps this node's copy of the CA key in step with its role in
// Raft: a voter fetches it, a node that is no voter any more deletes it,
// and in between the node's certificate follows the role (voterCerts). It
// also gives the key to voters that ask (GET /v1/ca-key). One loop
// (keepCAKey) changes the copy; serveCAKey only reads it.
type caKeys struct {
	self  identity
	keys  caCopy
	raft  runningRaft
	state revocationWatch
	certs roleCertificate
	nodes leaderCaller // here: the leader, or any voter
	peers callerIdentity
	log   *slog.Logger
}

// caCopy is this node's copy of the CA key on disk (caKeeper).
type caCopy interface {
	caHolder
	drop() error
}

// revocationWatch is what the replicated state says of this node's
// standing, and a signal when it may have changed.
type revocationWatch interface {
	Revoked(id string) bool
	Changed() <-chan struct{}
}

// roleCertificate issues this node the certificate of its role
// (voterCerts).
type roleCertificate interface {
	settleVoterCert(voter bool) error
}

// callerIdentity is the node that sent a node call, nil if none or
// revoked (trust.peerOf).
type callerIdentity interface {
	peerOf(r *http.Request) *pki.NodeIdentity
}

var (
	_ caCopy          = (*caKeeper)(nil)
	_ revocationWatch = (*store.Store)(nil)
	_ roleCertificate = (*voterCerts)(nil)
	_ callerIdentity  = (*trust)(nil)
)

func newCAKeys(self identity, keys caCopy, r runningRaft, state revocationWatch, certs roleCertificate, nodes leaderCaller, peers callerIdentity, log *slog.Logger) *caKeys {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &caKeys{self: self, keys: keys, raft: r, state: state, certs: certs, nodes: nodes, peers: peers, log: log}
}

// serveCAKey gives this node's copy of the CA key to a node that is a
// voter in this node's current Raft configuration and not revoked.
func (k *caKeys) serveCAKey(w http.ResponseWriter, r *http.Request) {
	ca := k.keys.get()
	if ca == nil {
		writeAnswer(w, nil, fmt.Errorf("%w: node %s holds no copy of the CA key", api.ErrNotFound, k.self.Name), false)
		return
	}
	peer := k.peers.peerOf(r)
	if peer == nil || k.state.Revoked(peer.ID) {
		writeAnswer(w, caKeyAnswer{Refused: "the caller is no node of this cluster"}, nil, false)
		return
	}
	f := k.raft.r().GetConfiguration()
	if err := f.Error(); err != nil {
		writeAnswer(w, nil, fmt.Errorf("%w: read the Raft configuration: %v", api.ErrNoLeader, err), false)
		return
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == peer.ID && s.Suffrage == raft.Voter {
			k.log.Info("gave the CA key to a voter", "name", peer.Name, "id", peer.ID)
			writeAnswer(w, caKeyAnswer{Key: ca.KeyPEM()}, nil, false)
			return
		}
	}
	writeAnswer(w, caKeyAnswer{Refused: fmt.Sprintf("node %s is not a voter: only voters hold the CA key", peer.Name)}, nil, false)
}

// askCAKey calls GET /v1/ca-key on the node of Raft address addr.
func (k *caKeys) askCAKey(ctx context.Context, addr raft.ServerAddress) (caKeyAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return nodeGet[caKeyAnswer](ctx, k.nodes, addr, "/v1/ca-key")
}

// keepCAKey keeps this node's copy of the CA key in step with its role
// until ctx ends.
func (k *caKeys) keepCAKey(ctx context.Context) error {
	tick := time.NewTicker(caKeySync)
	defer tick.Stop()
	var lastErr string
	for {
		changed := k.state.Changed()
		if err := k.settleCAKey(ctx); err != nil {
			// Once per new reason: a voter waits for a holder every tick,
			// which is usual for a moment after a start or an upgrade.
			if err.Error() != lastErr {
				k.log.Info("CA key", "err", err)
			}
			lastErr = err.Error()
		} else {
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		}
	}
}

// settleCAKey fetches the CA key for a voter that lacks it and deletes
// it from a node that is no voter any more; in between it gives the node
// the certificate of its role (settleVoterCert).
func (k *caKeys) settleCAKey(ctx context.Context) error {
	has := k.keys.get() != nil
	if k.state.Revoked(k.self.ID) {
		if has {
			k.log.Warn("this node's identity was revoked: deleting its copy of the CA key")
			return k.keys.drop()
		}
		return nil
	}
	f := k.raft.r().GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	servers := f.Configuration().Servers
	if len(servers) == 0 {
		return nil // no Raft state yet (a new or rejoining node): no role to go by
	}
	voter := isVoterIn(f.Configuration(), k.self.ID)
	if voter && !has {
		if err := k.fetchCAKey(ctx, servers); err != nil {
			return err
		}
	}
	// The certificate follows the role while this node holds the key: a
	// demoted node trades its voter certificate before it deletes the key.
	if err := k.certs.settleVoterCert(voter); err != nil {
		return err
	}
	if !voter && has {
		return k.dropCAKeyIfHeld(ctx)
	}
	return nil
}

// fetchCAKey asks the leader for the CA key, then the other voters.
func (k *caKeys) fetchCAKey(ctx context.Context, servers []raft.Server) error {
	leader, leaderID := k.raft.r().LeaderWithID()
	var asks []raft.ServerAddress
	if leader != "" && string(leaderID) != k.self.ID {
		asks = append(asks, leader)
	}
	for _, s := range servers {
		if s.Suffrage == raft.Voter && string(s.ID) != k.self.ID && s.ID != leaderID {
			asks = append(asks, s.Address)
		}
	}
	var errs []error
	for _, addr := range asks {
		_, hp := splitRaftAddr(addr)
		ans, err := k.askCAKey(ctx, addr)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", hp, err))
		case ans.Refused != "":
			errs = append(errs, fmt.Errorf("%s refused: %s", hp, ans.Refused))
		default:
			if err := k.keys.put(ans.Key); err != nil {
				return fmt.Errorf("the CA key from %s: %w", hp, err)
			}
			k.log.Info("this voter received the CA key", "from", hp)
			return nil
		}
	}
	if len(errs) == 0 {
		return errors.New("this voter lacks the CA key and knows no other voter to ask")
	}
	return fmt.Errorf("this voter lacks the CA key and no voter gave it: %w", errors.Join(errs...))
}

// dropCAKeyIfHeld deletes this non-voter's copy once the leader shows it
// holds one: the leader refuses this node the key for not being a voter,
// which it only says when it has the key.
func (k *caKeys) dropCAKeyIfHeld(ctx context.Context) error {
	leader, leaderID := k.raft.r().LeaderWithID()
	if leader == "" || string(leaderID) == k.self.ID {
		return nil
	}
	ans, err := k.askCAKey(ctx, leader)
	if err != nil || ans.Refused == "" {
		return nil // the leader lacks the key, or is out of reach: keep this copy for now
	}
	k.log.Info("this node is no voter: deleting its copy of the CA key")
	return k.keys.drop()
}

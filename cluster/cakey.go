package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/pki"
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

// serveCAKey gives this node's copy of the CA key to a node that is a
// voter in this node's current Raft configuration and not revoked.
func (n *Node) serveCAKey(w http.ResponseWriter, r *http.Request) {
	ca := n.cakey.get()
	if ca == nil {
		writeAnswer(w, nil, fmt.Errorf("%w: node %s holds no copy of the CA key", api.ErrNotFound, n.id.Name), false)
		return
	}
	peer := n.peerOf(r)
	if peer == nil || n.store.Revoked(peer.ID) {
		writeAnswer(w, caKeyAnswer{Refused: "the caller is no node of this cluster"}, nil, false)
		return
	}
	f := n.raft.r().GetConfiguration()
	if err := f.Error(); err != nil {
		writeAnswer(w, nil, fmt.Errorf("%w: read the Raft configuration: %v", api.ErrNoLeader, err), false)
		return
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == peer.ID && s.Suffrage == raft.Voter {
			n.log.Info("gave the CA key to a voter", "name", peer.Name, "id", peer.ID)
			writeAnswer(w, caKeyAnswer{Key: ca.KeyPEM()}, nil, false)
			return
		}
	}
	writeAnswer(w, caKeyAnswer{Refused: fmt.Sprintf("node %s is not a voter: only voters hold the CA key", peer.Name)}, nil, false)
}

// askCAKey calls GET /v1/ca-key on the node of Raft address addr.
func (n *Node) askCAKey(ctx context.Context, addr raft.ServerAddress) (caKeyAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return nodeGet[caKeyAnswer](ctx, n, addr, "/v1/ca-key")
}

// keepCAKey keeps this node's copy of the CA key in step with its role
// until ctx ends.
func (n *Node) keepCAKey(ctx context.Context) error {
	tick := time.NewTicker(caKeySync)
	defer tick.Stop()
	var lastErr string
	for {
		changed := n.store.Changed()
		if err := n.settleCAKey(ctx); err != nil {
			// Once per new reason: a voter waits for a holder every tick,
			// which is usual for a moment after a start or an upgrade.
			if err.Error() != lastErr {
				n.log.Info("CA key", "err", err)
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
func (n *Node) settleCAKey(ctx context.Context) error {
	has := n.cakey.get() != nil
	if n.store.Revoked(n.id.ID) {
		if has {
			n.log.Warn("this node's identity was revoked: deleting its copy of the CA key")
			return n.cakey.drop()
		}
		return nil
	}
	f := n.raft.r().GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	servers := f.Configuration().Servers
	if len(servers) == 0 {
		return nil // no Raft state yet (a new or rejoining node): no role to go by
	}
	voter := isVoterIn(f.Configuration(), n.id.ID)
	if voter && !has {
		if err := n.fetchCAKey(ctx, servers); err != nil {
			return err
		}
	}
	// The certificate follows the role while this node holds the key: a
	// demoted node trades its voter certificate before it deletes the key.
	if err := n.settleVoterCert(voter); err != nil {
		return err
	}
	if !voter && has {
		return n.dropCAKeyIfHeld(ctx)
	}
	return nil
}

// fetchCAKey asks the leader for the CA key, then the other voters.
func (n *Node) fetchCAKey(ctx context.Context, servers []raft.Server) error {
	leader, leaderID := n.raft.r().LeaderWithID()
	var asks []raft.ServerAddress
	if leader != "" && string(leaderID) != n.id.ID {
		asks = append(asks, leader)
	}
	for _, s := range servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.id.ID && s.ID != leaderID {
			asks = append(asks, s.Address)
		}
	}
	var errs []error
	for _, addr := range asks {
		_, hp := splitRaftAddr(addr)
		ans, err := n.askCAKey(ctx, addr)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", hp, err))
		case ans.Refused != "":
			errs = append(errs, fmt.Errorf("%s refused: %s", hp, ans.Refused))
		default:
			if err := n.cakey.put(ans.Key); err != nil {
				return fmt.Errorf("the CA key from %s: %w", hp, err)
			}
			n.log.Info("this voter received the CA key", "from", hp)
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
func (n *Node) dropCAKeyIfHeld(ctx context.Context) error {
	leader, leaderID := n.raft.r().LeaderWithID()
	if leader == "" || string(leaderID) == n.id.ID {
		return nil
	}
	ans, err := n.askCAKey(ctx, leader)
	if err != nil || ans.Refused == "" {
		return nil // the leader lacks the key, or is out of reach: keep this copy for now
	}
	n.log.Info("this node is no voter: deleting its copy of the CA key")
	return n.cakey.drop()
}

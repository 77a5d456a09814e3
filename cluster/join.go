package cluster

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/store"
)

// joinRequest is what a joining node sends, once it has checked that the
// node it dialled shows the CA the token names.
type joinRequest struct {
	Secret    []byte `json:"secret"`
	Name      string `json:"name"`
	ID        string `json:"id"`
	PublicKey []byte `json:"public_key"` // PEM
}

// joinResponse admits the node.
type joinResponse struct {
	Cert      []byte   `json:"cert"`
	CA        []byte   `json:"ca"`
	GossipKey []byte   `json:"gossip_key"`
	ClusterID string   `json:"cluster_id"`
	Members   []string `json:"members"` // gossip host:port of live members
	Epoch     uint64   `json:"epoch,omitempty"`
}

// joinTimeout bounds one attempt at one address of the token.
const joinTimeout = 10 * time.Second

// joinCluster asks the cluster of token to admit this node and writes the
// material it receives. Nothing is written when no address admits it.
func joinCluster(ctx context.Context, dataDir, token string, id identity) (*material, []string, error) {
	tok, err := pki.ParseToken(token)
	if err != nil {
		return nil, nil, fmt.Errorf("SHOAL_JOIN, --join or --join-file: %w", err)
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, nil, err
	}
	pub, err := pki.PublicKeyPEM(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	body, err := json.Marshal(joinRequest{Secret: tok.Secret, Name: id.Name, ID: id.ID, PublicKey: pub})
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for _, addr := range tok.Addrs {
		resp, err := joinOne(ctx, tok.CA, addr, body)
		if err == nil {
			if resp.Epoch > 0 {
				if err := writeEpoch(dataDir, resp.Epoch); err != nil {
					return nil, nil, err
				}
			}
			if err := writeMaterial(dataDir, resp.Cert, pki.KeyPEM(key), resp.CA, resp.GossipKey, nil); err != nil {
				return nil, nil, err
			}
			m, _, err := loadMaterial(dataDir)
			return m, resp.Members, err
		}
		var refused *joinRefused
		if errors.As(err, &refused) {
			return nil, nil, err // the cluster answered: another address would say the same
		}
		errs = append(errs, err)
	}
	return nil, nil, fmt.Errorf("join: no address of the token admitted this node: %w", errors.Join(errs...))
}

// joinRefused is the cluster's answer no.
type joinRefused struct {
	addr string
	msg  string
}

func (e *joinRefused) Error() string { return fmt.Sprintf("join refused by %s: %s", e.addr, e.msg) }

func joinOne(ctx context.Context, ca pki.Fingerprint, addr string, body []byte) (*joinResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: pki.PinnedConfig(ca, pki.ProtoJoin, "the join token", nil), DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/v1/join", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if errors.Is(err, pki.ErrWrongCluster) {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, fmt.Errorf("%s: %w; nothing was sent", addr, err)
		}
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		var we api.WireError
		if json.Unmarshal(data, &we) != nil || we.Message == "" {
			we.Message = resp.Status
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			return nil, fmt.Errorf("%s: %s", addr, we.Message)
		}
		return nil, &joinRefused{addr: addr, msg: we.Message}
	}
	var jr joinResponse
	if err := json.Unmarshal(data, &jr); err != nil {
		return nil, fmt.Errorf("%s: bad join answer: %w", addr, err)
	}
	return &jr, nil
}

// serveJoin admits a node that knows the join secret: it signs the node's
// key and tells it the gossip key and where the members are. It writes
// nothing to Raft: the leader registers the node once it gossips. Only a
// node holding the CA key (a voter) can: others send the joining node on
// to the next address of its token.
func (n *Node) serveJoin(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, kind, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		n.peerLog.Warn("refused a join", "remote", r.RemoteAddr, "reason", msg) // strangers may try: rate-limited
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(api.WireError{Kind: kind, Message: msg})
	}
	var req joinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		fail(http.StatusBadRequest, api.KindInvalid, "decode join request: %v", err)
		return
	}
	ca := n.cakey.get()
	if ca == nil {
		fail(http.StatusServiceUnavailable, api.KindNoLeader, "this node holds no copy of the cluster CA's key (only voters do): try another address")
		return
	}
	secret, err := n.joinSecret(ca)
	if err != nil {
		fail(http.StatusServiceUnavailable, api.KindNoLeader, "%v: try another address", err)
		return
	}
	if !pki.SecretMatches(req.Secret, secret) {
		fail(http.StatusForbidden, api.KindInvalid, "wrong join secret: get the current token with `shoal token`")
		return
	}
	if !api.ValidName(req.Name) {
		fail(http.StatusBadRequest, api.KindInvalid, "node name %q is not a DNS label", req.Name)
		return
	}
	if b, err := hex.DecodeString(req.ID); err != nil || len(b) != 16 {
		fail(http.StatusBadRequest, api.KindInvalid, "node id %q is not 32 hex digits", req.ID)
		return
	}
	// A name belongs to one node at a time, live or not: a stopped node
	// comes back under it. `shoal forget` frees the name of a node gone
	// for good.
	recs, err := n.store.Nodes()
	if err != nil {
		fail(http.StatusInternalServerError, api.KindInternal, "read the node registry: %v", err)
		return
	}
	for _, rec := range recs {
		if rec.Name == req.Name && rec.ID != "" && rec.ID != req.ID && !n.store.Revoked(rec.ID) {
			fail(http.StatusConflict, api.KindConflict, "node name %q belongs to another node of this cluster: choose another with --name, or, if that device is gone for good, free the name with `shoal forget %s`", req.Name, req.Name)
			return
		}
	}
	for _, m := range n.liveMembers() {
		if m.Name == req.Name && m.Meta.ID != req.ID {
			fail(http.StatusConflict, api.KindConflict, "node name %q is in use by a live node: choose another with --name", req.Name)
			return
		}
	}
	pub, err := pki.ParsePublicKey(req.PublicKey)
	if err != nil {
		fail(http.StatusBadRequest, api.KindInvalid, "public key: %v", err)
		return
	}
	cert, err := ca.Issue(pub, pki.NodeIdentity{Name: req.Name, ID: req.ID})
	if err != nil {
		fail(http.StatusBadRequest, api.KindInvalid, "%v", err)
		return
	}
	clusterID, _ := n.store.ClusterID()
	resp := joinResponse{Cert: cert, CA: ca.CertPEM(), GossipKey: n.mat.gossipKey, ClusterID: clusterID, Epoch: n.epoch.Load()}
	for _, m := range n.liveMembers() {
		if m.State == api.NodeAlive {
			resp.Members = append(resp.Members, m.GossipAddr)
		}
	}
	n.log.Info("admitted a node", "name", req.Name, "id", req.ID, "remote", r.RemoteAddr)
	writeJSONResponse(w, resp)
}

func writeJSONResponse(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Token answers `shoal token`.
//
// Right after a bootstrap or a promotion a voter may not hold the
// cluster's secrets or the CA key for a moment (the new leader commits
// the secrets in its first term): it waits for them, up to tokenWait,
// rather than fail a `shoal up & shoal token` that came a moment early.
func (n *Node) Token(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, tokenWait)
	defer cancel()
	for {
		changed := n.store.Changed()
		tok, err := n.JoinToken()
		if err == nil || !errors.Is(err, api.ErrNoLeader) {
			return tok, err
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-changed:
		case <-time.After(100 * time.Millisecond): // the CA key's copy comes without a commit
		}
	}
}

// tokenWait bounds how long `shoal token` waits for a voter to hold what
// a token needs.
const tokenWait = 10 * time.Second

// errNoCAKey refuses what only a holder of the CA key can do.
func (n *Node) errNoCAKey() error {
	if f := n.raft.r().GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if string(s.ID) == n.id.ID && s.Suffrage == raft.Voter {
				return fmt.Errorf("%w: node %s is a voter but has not received the cluster CA's key yet: try again in a moment", api.ErrNoLeader, n.id.Name)
			}
		}
	}
	// The admin's CLI takes a NotVoterError to a voter, as it does writes.
	return n.trust.notVoter()
}

// joinSecret opens the join secret of the replica's sealed record.
func (n *Node) joinSecret(ca *pki.CA) ([]byte, error) {
	sec, ok, err := n.store.Secrets()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: this node does not hold the cluster's secrets yet", api.ErrNoLeader)
	}
	secret, err := ca.OpenSecret(sec.SealedJoinSecret)
	if err != nil {
		return nil, fmt.Errorf("join secret: %w", err)
	}
	return secret, nil
}

// JoinToken is the token for new nodes: this cluster's CA, the secret, and
// the cluster ports of the voters (this node first). Only a node holding
// the CA key can open the secret.
func (n *Node) JoinToken() (string, error) {
	ca := n.cakey.get()
	if ca == nil {
		return "", n.errNoCAKey()
	}
	secret, err := n.joinSecret(ca)
	if err != nil {
		return "", err
	}
	return n.tokenFor(secret), nil
}

// RotateToken answers `shoal token --rotate`: a new join secret, committed
// through the leader; the old token admits no node afterwards, and the
// nodes already joined are not touched. It returns the new token.
func (n *Node) RotateToken(ctx context.Context) (string, error) {
	ca := n.cakey.get()
	if ca == nil {
		return "", n.errNoCAKey()
	}
	sec, ok, err := n.store.Secrets()
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%w: this node does not hold the cluster's secrets yet", api.ErrNoLeader)
	}
	secret := pki.NewSecret()
	if sec.SealedJoinSecret, err = ca.SealSecret(secret); err != nil {
		return "", err
	}
	if err := n.writes.write(ctx, store.PutSealedSecrets{Secrets: sec}, nil); err != nil {
		return "", fmt.Errorf("rotate the join secret: %w", err)
	}
	n.log.Warn("the join secret was rotated: earlier tokens admit no node")
	return n.tokenFor(secret), nil
}

func (n *Node) tokenFor(secret []byte) string {
	tok := pki.Token{CA: pki.FingerprintOf(n.mat.ident.CA), Secret: secret}
	self := net.JoinHostPort(n.advertise, fmt.Sprint(n.cfg.Port))
	tok.Addrs = append(tok.Addrs, self)
	if f := n.raft.r().GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if _, a := splitRaftAddr(s.Address); a != self && s.Suffrage == raft.Voter && len(tok.Addrs) < 5 {
				tok.Addrs = append(tok.Addrs, a)
			}
		}
	}
	return tok.String()
}

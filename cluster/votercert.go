package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/store"
)

// Raft's protocol is admitted only from a voter's certificate (allow):
// hashicorp/raft takes an RPC from whoever sends it, and a stolen
// non-voter that could send AppendEntries with a higher term would lead
// the cluster and write its desired state. Only the leader and candidates
// open Raft connections, and both are voters, so that costs nothing.
//
// The marker is in the certificate rather than looked up in the receiver's
// Raft configuration because a follower that missed a promotion (it was
// away while a non-voter became a voter and then leader) must still accept
// its new leader. Only a holder of the CA key, a voter, can issue the
// marker: a voter that holds the key issues itself a voter certificate
// (same key, name and id) and writes it to DATA/tls/node.crt; a node that
// stops being a voter issues itself a plain one before it deletes the key.
// A voter promoted a moment ago cannot win an election until it has the
// key, about a second later (keepCAKey).

// voterCerts gives this node the certificate its role calls for, issued
// with the CA key it holds. It is used before Raft starts (startAsVoter)
// and then by caKeys' loop alone, so its calls never overlap.
type voterCerts struct {
	ident  *pki.Identity
	keys   caHolder
	legacy legacyKeySource
	path   string // DATA/tls/node.crt
	log    *slog.Logger
}

// caHolder is this node's copy of the CA key (caKeeper).
type caHolder interface {
	get() *pki.CA // nil without the key
	put(keyPEM []byte) error
}

// legacyKeySource is the previous release's secrets in the replicated
// state, which held the CA key in clear.
type legacyKeySource interface {
	LegacySecrets() (store.LegacySecrets, bool, error)
}

var (
	_ caHolder        = (*caKeeper)(nil)
	_ legacyKeySource = (*store.Store)(nil)
)

func newVoterCerts(ident *pki.Identity, keys caHolder, legacy legacyKeySource, dataDir string, log *slog.Logger) *voterCerts {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &voterCerts{ident: ident, keys: keys, legacy: legacy, path: filepath.Join(tlsDir(dataDir), "node.crt"), log: log}
}

// settleVoterCert gives this node the certificate its role calls for, if
// it holds the CA key to issue it. It runs before Raft starts (openRaft:
// an upgraded voter must keep leading) and then on keepCAKey's loop only.
func (v *voterCerts) settleVoterCert(voter bool) error {
	cur := v.ident.Node()
	if cur.Voter == voter {
		return nil
	}
	ca := v.keys.get()
	if ca == nil {
		if voter {
			return errors.New("this voter has no voter certificate yet and waits for the CA key to issue one: it cannot lead until then")
		}
		// A demoted node that lost its key before it could trade its
		// certificate (a crash in between): the marker stays until the
		// node is revoked, as the key itself could have.
		return nil
	}
	want := cur
	want.Voter = voter
	certPEM, err := ca.Issue(v.ident.PublicKey(), want)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(v.path, certPEM); err != nil {
		return fmt.Errorf("write %s: %w", v.path, err)
	}
	if err := v.ident.Replace(certPEM); err != nil {
		return fmt.Errorf("%s: %w", v.path, err)
	}
	if voter {
		v.log.Info("this voter issued itself a voter certificate")
	} else {
		v.log.Info("this node is no voter: it issued itself a plain node certificate")
	}
	return nil
}

// startAsVoter gives a node that its stored Raft configuration makes a
// voter its voter certificate, before Raft starts.
func (v *voterCerts) startAsVoter() {
	if v.keys.get() == nil {
		// A cluster upgraded from the release that kept the CA key in clear
		// in the replicated state (see migrateSecrets): its voters take the
		// key from there, or none could lead the others to migrate it.
		if legacy, ok, err := v.legacy.LegacySecrets(); err == nil && ok {
			if err := v.keys.put(legacy.CAKey); err != nil {
				v.log.Warn("keep the CA key of the replicated state", "err", err)
			}
		}
	}
	if err := v.settleVoterCert(true); err != nil {
		v.log.Warn("voter certificate", "err", err)
	}
}

// isVoterIn says whether node id is a voter in c.
func isVoterIn(c raft.Configuration, id string) bool {
	for _, s := range c.Servers {
		if string(s.ID) == id {
			return s.Suffrage == raft.Voter
		}
	}
	return false
}

package store

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/shoal-edge/shoal/api"
	bolt "go.etcd.io/bbolt"
)

// A backup (`shoal snapshot save`) is the desired state an operator can
// bring back after losing a cluster: apps, and the labels and cordons of
// nodes by name. Not the cluster's secrets (a new cluster has its own),
// nor allocations (the new cluster places the apps on its own nodes).
//
// File format: two text lines, then JSON:
//
//	shoal-backup 1
//	sha256 <hex of the JSON that follows>
//	{"cluster_id": ..., "index": ..., "taken_at": ..., "apps": [...], "nodes": [...]}

// Backup is the content of a backup file.
type Backup struct {
	ClusterID string       `json:"cluster_id"`
	Index     uint64       `json:"index"`
	TakenAt   time.Time    `json:"taken_at"`
	Apps      []api.App    `json:"apps"`
	Nodes     []BackupNode `json:"nodes"`
}

// BackupNode is what an operator set on a node.
type BackupNode struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels,omitempty"`
	Cordoned bool              `json:"cordoned,omitempty"`
}

const backupMagic = "shoal-backup 1"

// ErrBadBackup is wrapped by every ReadBackup error.
var ErrBadBackup = errors.New("not a usable shoal backup")

// Backup reads the desired state in one transaction and encodes it.
func (s *Store) Backup(now time.Time) ([]byte, error) {
	st, err := s.Snapshot()
	if err != nil {
		return nil, err
	}
	b := Backup{Index: st.Index, TakenAt: now.UTC(), Apps: st.Apps}
	if b.ClusterID, err = s.ClusterID(); err != nil {
		return nil, err
	}
	// Settings still waiting for their node are the operator's too.
	for _, n := range st.Records() {
		b.Nodes = append(b.Nodes, BackupNode{Name: n.Name, Labels: n.Labels, Cordoned: n.Cordoned})
	}
	body, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	var out bytes.Buffer
	fmt.Fprintf(&out, "%s\nsha256 %s\n", backupMagic, hex.EncodeToString(sum[:]))
	out.Write(body)
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// ReadBackup checks and decodes a backup file.
func ReadBackup(r io.Reader) (Backup, error) {
	var b Backup
	br := bufio.NewReader(io.LimitReader(r, 256<<20))
	magic, err := br.ReadString('\n')
	if err != nil || strings.TrimSpace(magic) != backupMagic {
		return b, fmt.Errorf("%w: it does not start with %q", ErrBadBackup, backupMagic)
	}
	sumLine, err := br.ReadString('\n')
	want, ok := strings.CutPrefix(strings.TrimSpace(sumLine), "sha256 ")
	if err != nil || !ok || len(want) != 64 {
		return b, fmt.Errorf("%w: its checksum line is missing or damaged", ErrBadBackup)
	}
	body, err := io.ReadAll(br)
	if err != nil {
		return b, err
	}
	body = bytes.TrimSuffix(body, []byte("\n"))
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != want {
		return b, fmt.Errorf("%w: its content does not match its checksum (truncated or altered)", ErrBadBackup)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("%w: %v", ErrBadBackup, err)
	}
	for _, a := range b.Apps {
		a.Version = 0
		if err := a.Validate(); err != nil {
			return b, fmt.Errorf("%w: app %q: %v", ErrBadBackup, a.Name, err)
		}
	}
	// Node settings meet the rules that `shoal label` and `shoal up
	// --label` do: a restore is no way around them.
	for _, n := range b.Nodes {
		if !api.ValidName(n.Name) {
			return b, fmt.Errorf("%w: node %q: not a node name (a DNS label)", ErrBadBackup, n.Name)
		}
		for k, v := range n.Labels {
			if err := api.ValidLabel(k, v); err != nil {
				return b, fmt.Errorf("%w: node %s: %v", ErrBadBackup, n.Name, err)
			}
		}
	}
	return b, nil
}

// RestoreBackup brings a backup's apps and node settings into a cluster
// that has no apps yet. Nodes are matched by name; settings of nodes the
// cluster does not know are kept for when they join.
type RestoreBackup struct {
	Backup Backup `json:"backup"`
}

func restoreBackup(tx *bolt.Tx, index uint64, b Backup) error {
	if k, _ := tx.Bucket(bucketApps).Cursor().First(); k != nil {
		return fmt.Errorf("%w: the cluster already has apps: restore into a freshly bootstrapped cluster", api.ErrConflict)
	}
	if _, err := putApps(tx, index, b.Apps); err != nil {
		return err
	}
	for _, n := range b.Nodes {
		err := updateNode(tx, n.Name, func(r *NodeRecord) {
			r.Labels, r.Cordoned = n.Labels, n.Cordoned
		})
		if errors.Is(err, api.ErrNotFound) {
			err = putJSON(tx.Bucket(bucketNodes), []byte(n.Name), NodeRecord{Name: n.Name, Labels: n.Labels, Cordoned: n.Cordoned})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

package store

import (
	"encoding/json"
	"fmt"

	"github.com/shoal-edge/shoal/api"
)

// CommandType is the first byte of every Raft log entry. Types are never
// renumbered: old entries must decode the same way forever.
type CommandType byte

const (
	CmdBootstrap   CommandType = 1
	CmdPutApps     CommandType = 2
	CmdDeleteApps  CommandType = 3
	CmdSetAllocs   CommandType = 4
	CmdPutNode     CommandType = 5
	CmdDeleteNodes CommandType = 6
	CmdPutSecrets  CommandType = 7
	CmdNodeFacts   CommandType = 8
	CmdSetLabels   CommandType = 9
	CmdSetCordon   CommandType = 10
	CmdRestore     CommandType = 11
	CmdRevoke      CommandType = 12
	CmdScale       CommandType = 13
	// CmdPutSealedSecrets replaces CmdPutSecrets, which this release
	// decodes from old logs but never writes.
	CmdPutSealedSecrets CommandType = 14
)

// Bootstrap is the first entry of a cluster.
type Bootstrap struct {
	ClusterID string `json:"cluster_id"`
}

// PutApps creates or updates apps as they are: the API judged them. An app
// whose spec did not change keeps its version; a new version keeps the one
// it replaces while an allocation names it (specs.go).
type PutApps struct {
	Apps []api.App `json:"apps"`
}

// DeleteApps removes apps and their allocations. Unknown names fail the whole
// command.
type DeleteApps struct {
	Names []string `json:"names"`
}

// SetAllocs is the scheduler's output.
type SetAllocs struct {
	Put    []api.Allocation `json:"put,omitempty"`
	Delete []AllocKey       `json:"delete,omitempty"`
}

// AllocKey names an allocation.
type AllocKey struct {
	App   string `json:"app"`
	Index int    `json:"index"`
}

// PutNode registers or updates a node.
type PutNode struct {
	Node NodeRecord `json:"node"`
}

// DeleteNodes drops nodes from the registry.
type DeleteNodes struct {
	Names []string `json:"names"`
}

// PutSecrets is the previous release's record of the cluster's secrets,
// in clear. It is still applied from old logs, so that the leader finds
// the record to replace (PutSealedSecrets), and never written.
type PutSecrets struct {
	Secrets LegacySecrets `json:"secrets"`
}

// PutSealedSecrets records the cluster's trust record: from bootstrap, a
// migration of the previous release's record (which it deletes), or a new
// join secret (`shoal token --rotate`).
type PutSealedSecrets struct {
	Secrets Secrets `json:"secrets"`
}

// NodeFacts registers a node or updates what gossip is the authority on
// (id, address, ports, arch, os); labels and cordon stay as an operator set
// them. Labels here are a new node's initial ones only.
type NodeFacts struct {
	Node NodeRecord `json:"node"`
}

// SetLabels sets and removes labels of a known node.
type SetLabels struct {
	Node   string            `json:"node"`
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// SetCordon marks a known node unschedulable (its instances move) or
// schedulable again.
type SetCordon struct {
	Node     string `json:"node"`
	Cordoned bool   `json:"cordoned"`
}

// Revoke refuses a node id for good: the node left, or its name was taken
// over by a new node. Its certificate no longer admits it anywhere.
type Revoke struct {
	ID string `json:"id"`
}

// Scale sets the replica counts of replicated apps, all or none: an app
// that is unknown or global fails the command.
type Scale struct {
	Replicas map[string]int `json:"replicas"`
}

// Encode turns a command into a log entry.
func Encode(cmd any) ([]byte, error) {
	var t CommandType
	switch cmd.(type) {
	case Bootstrap, *Bootstrap:
		t = CmdBootstrap
	case PutApps, *PutApps:
		t = CmdPutApps
	case DeleteApps, *DeleteApps:
		t = CmdDeleteApps
	case SetAllocs, *SetAllocs:
		t = CmdSetAllocs
	case PutNode, *PutNode:
		t = CmdPutNode
	case DeleteNodes, *DeleteNodes:
		t = CmdDeleteNodes
	case PutSecrets, *PutSecrets:
		t = CmdPutSecrets
	case PutSealedSecrets, *PutSealedSecrets:
		t = CmdPutSealedSecrets
	case NodeFacts, *NodeFacts:
		t = CmdNodeFacts
	case SetLabels, *SetLabels:
		t = CmdSetLabels
	case SetCordon, *SetCordon:
		t = CmdSetCordon
	case RestoreBackup, *RestoreBackup:
		t = CmdRestore
	case Revoke, *Revoke:
		t = CmdRevoke
	case Scale, *Scale:
		t = CmdScale
	default:
		return nil, fmt.Errorf("encode command: unknown type %T", cmd)
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command %T: %w", cmd, err)
	}
	return append([]byte{byte(t)}, body...), nil
}

// decode parses a log entry; an unknown type is an error every node reaches
// the same way.
func decode(data []byte) (any, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	var cmd any
	switch CommandType(data[0]) {
	case CmdBootstrap:
		cmd = &Bootstrap{}
	case CmdPutApps:
		cmd = &PutApps{}
	case CmdDeleteApps:
		cmd = &DeleteApps{}
	case CmdSetAllocs:
		cmd = &SetAllocs{}
	case CmdPutNode:
		cmd = &PutNode{}
	case CmdDeleteNodes:
		cmd = &DeleteNodes{}
	case CmdPutSecrets:
		cmd = &PutSecrets{}
	case CmdPutSealedSecrets:
		cmd = &PutSealedSecrets{}
	case CmdNodeFacts:
		cmd = &NodeFacts{}
	case CmdSetLabels:
		cmd = &SetLabels{}
	case CmdSetCordon:
		cmd = &SetCordon{}
	case CmdRestore:
		cmd = &RestoreBackup{}
	case CmdRevoke:
		cmd = &Revoke{}
	case CmdScale:
		cmd = &Scale{}
	default:
		return nil, fmt.Errorf("unknown command type %d: written by a newer shoal?", data[0])
	}
	if err := json.Unmarshal(data[1:], cmd); err != nil {
		return nil, fmt.Errorf("decode command type %d: %w", data[0], err)
	}
	return cmd, nil
}

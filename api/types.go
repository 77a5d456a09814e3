// Package api owns the wire types shared by the CLI and the daemon (App, Node,
// Allocation, InstanceStatus, ClusterStatus), their validation and the
// sentinel errors callers branch on. It imports only the standard library.
package api

import (
	"strconv"
	"time"
)

// Mode says how many instances an app has and where: the app spec's `mode`.
type Mode string

// Modes of an app.
const (
	ModeReplicated Mode = "replicated" // Replicas instances, placed by the scheduler
	ModeGlobal     Mode = "global"     // one instance on every eligible node
)

// RestartPolicy says when an app's exited instances start again: the
// app spec's `restart`.
type RestartPolicy string

// Restart policies.
const (
	RestartAlways    RestartPolicy = "always"
	RestartOnFailure RestartPolicy = "on-failure"
	RestartNever     RestartPolicy = "never"
)

// Network is a container's network: the app spec's `network`, `run --network`.
type Network string

// Network modes.
const (
	NetworkBridge Network = "bridge"
	NetworkHost   Network = "host"
)

// InstanceState is an instance's state, as `shoal ps` shows it.
type InstanceState string

// Instance states.
const (
	StatePending   InstanceState = "pending"
	StatePulling   InstanceState = "pulling"
	StateStarting  InstanceState = "starting"
	StateRunning   InstanceState = "running"
	StateUnhealthy InstanceState = "unhealthy"
	StateExited    InstanceState = "exited"
	StateFailed    InstanceState = "failed"
	// StateUnknown: the answering node cannot learn the state, because
	// the instance's node is unreachable or there is no leader to ask.
	StateUnknown InstanceState = "unknown"
)

// NodeState is a node's state in gossip as the answering node sees it, as
// `shoal nodes` shows it.
type NodeState string

// Node states.
const (
	NodeAlive   NodeState = "alive"
	NodeSuspect NodeState = "suspect" // no direct ack of the answering node's probes lately
	NodeDead    NodeState = "dead"    // gossip gave up on it without its leave, or never saw it
	NodeLeft    NodeState = "left"    // it stopped on purpose and said so
)

// NodeRole is a node's part in Raft.
type NodeRole string

// Node roles.
const (
	RoleVoter    NodeRole = "voter"
	RoleNonVoter NodeRole = "non-voter"
)

// App is the desired state of one application, kept in Raft.
type App struct {
	Name            string            `json:"name" yaml:"name"`
	Image           string            `json:"image" yaml:"image"`
	Command         []string          `json:"command,omitempty" yaml:"command"`
	Env             map[string]string `json:"env,omitempty" yaml:"env"`
	User            string            `json:"user,omitempty" yaml:"user"`
	ReadOnly        bool              `json:"read_only,omitempty" yaml:"read_only"`
	Rlimits         map[string]string `json:"rlimits,omitempty" yaml:"rlimits"`
	Mode            Mode              `json:"mode,omitempty" yaml:"mode"`
	Replicas        int               `json:"replicas,omitempty" yaml:"replicas"`
	Placement       Placement         `json:"placement,omitempty" yaml:"placement"`
	Resources       Resources         `json:"resources,omitempty" yaml:"resources"`
	Restart         RestartPolicy     `json:"restart,omitempty" yaml:"restart"`
	Ports           []string          `json:"ports,omitempty" yaml:"ports"`
	Network         Network           `json:"network,omitempty" yaml:"network"`
	Volumes         []string          `json:"volumes,omitempty" yaml:"volumes"`
	Health          *Health           `json:"health,omitempty" yaml:"health"`
	Update          *Update           `json:"update,omitempty" yaml:"update"`
	RescheduleAfter Duration          `json:"reschedule_after,omitempty" yaml:"reschedule_after"`

	// Version is set by the cluster and bumped on every change of the spec.
	Version uint64 `json:"version,omitempty" yaml:"-"`
}

// Placement constrains the nodes an app may run on.
type Placement struct {
	Labels map[string]string `json:"labels,omitempty" yaml:"labels"`
	Arch   []string          `json:"arch,omitempty" yaml:"arch"`
}

// Resources limits one instance of an app.
type Resources struct {
	CPU    float64 `json:"cpu,omitempty" yaml:"cpu"`
	Memory Bytes   `json:"memory,omitempty" yaml:"memory"`
	Pids   int64   `json:"pids,omitempty" yaml:"pids"`
}

// Health describes how an instance's health is checked.
type Health struct {
	HTTP     string   `json:"http,omitempty" yaml:"http"`
	TCP      string   `json:"tcp,omitempty" yaml:"tcp"`
	Exec     []string `json:"exec,omitempty" yaml:"exec"`
	Interval Duration `json:"interval,omitempty" yaml:"interval"`
	Timeout  Duration `json:"timeout,omitempty" yaml:"timeout"`
	Retries  int      `json:"retries,omitempty" yaml:"retries"`
	// StartPeriod is a grace time after start when failures do not count.
	StartPeriod Duration `json:"start_period,omitempty" yaml:"start_period"`
}

// Update says how a new version of an app is rolled out.
type Update struct {
	MaxUnavailable int  `json:"max_unavailable,omitempty" yaml:"max_unavailable"`
	AutoRevert     bool `json:"auto_revert,omitempty" yaml:"auto_revert"`
}

// Node is a member of the cluster as the registry in Raft knows it, joined
// with what gossip says of it now.
type Node struct {
	Name     string            `json:"name"`
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Arch     string            `json:"arch"`
	OS       string            `json:"os"`
	Labels   map[string]string `json:"labels"`
	Role     NodeRole          `json:"role"`
	State    NodeState         `json:"state"`
	Cordoned bool              `json:"cordoned,omitempty"`
	// Instances counts the allocations placed on the node.
	Instances int `json:"instances"`
	// LastSeen is when the answering node last heard of it in gossip:
	// now for a live node, absent if never since the answering node
	// started.
	LastSeen *time.Time `json:"last_seen,omitempty"`
}

// Allocation places one instance of an app version on a node. Only the
// leader's scheduler writes allocations.
type Allocation struct {
	App     string `json:"app"`
	Index   int    `json:"index"`
	Version uint64 `json:"version"`
	Node    string `json:"node"`
	IP      string `json:"ip,omitempty"`
}

// Instance names the allocation as users see it: app/index.
func (a Allocation) Instance() string { return InstanceName(a.App, a.Index) }

// InstanceStatus is the observed state of one instance. It is reported by
// the node that runs it and never written through Raft.
type InstanceStatus struct {
	App       string        `json:"app"`
	Instance  string        `json:"instance"`
	Node      string        `json:"node"`
	Version   uint64        `json:"version"`
	State     InstanceState `json:"state"`
	Restarts  int           `json:"restarts"`
	PID       int           `json:"pid,omitempty"`
	IP        string        `json:"ip"`
	ExitCode  int           `json:"exit_code"`
	OOMKilled bool          `json:"oom_killed,omitempty"`
	StartedAt time.Time     `json:"started_at,omitzero"`
	Error     string        `json:"error,omitempty"`
	// Health is the last failing health check's output while unhealthy.
	Health string `json:"health,omitempty"`
	// Usage of a running instance, from its cgroup (node-local answers).
	CPUSeconds  float64 `json:"cpu_seconds,omitempty"`
	MemoryBytes uint64  `json:"memory_bytes,omitempty"`
}

// ClusterStatus answers `shoal status`.
type ClusterStatus struct {
	ClusterID   string   `json:"cluster_id"`
	Leader      string   `json:"leader"`
	Node        string   `json:"node"`
	Role        NodeRole `json:"role"`
	State       string   `json:"state"` // raft state: Leader, Follower, Candidate
	Term        uint64   `json:"term"`
	CommitIndex uint64   `json:"commit_index"`
	AppliedIdx  uint64   `json:"applied_index"`
	Voters      []string `json:"voters"`
	Stale       bool     `json:"stale"`
	Health      string   `json:"health"`
}

// Image is an image in a node's store.
type Image struct {
	Ref      string    `json:"ref"`
	Digest   string    `json:"digest"`
	ID       string    `json:"id"`
	Size     int64     `json:"size"`
	Platform string    `json:"platform"`
	Created  time.Time `json:"created,omitzero"`
}

// RunRequest asks a node for a one-off container outside scheduling.
type RunRequest struct {
	Image   string   `json:"image"`
	Name    string   `json:"name,omitempty"`
	Command []string `json:"command,omitempty"`
	Env     []string `json:"env,omitempty"`
	Network Network  `json:"network,omitempty"`
	Remove  bool     `json:"rm"`
}

// ExecRequest runs a command in a running instance.
type ExecRequest struct {
	App      string   `json:"app"`
	Index    int      `json:"index"`
	Command  []string `json:"command"`
	Env      []string `json:"env,omitempty"`
	TTY      bool     `json:"tty,omitempty"`
	Rows     uint16   `json:"rows,omitempty"`
	Cols     uint16   `json:"cols,omitempty"`
	HasStdin bool     `json:"stdin,omitempty"`
}

// ApplyResult reports what an apply changed.
type ApplyResult struct {
	Name    string `json:"name"`
	Version uint64 `json:"version"`
	Changed bool   `json:"changed"`
	// Unplaced says why no node can take the app's instances now (empty
	// when they are placed): the app is applied all the same, and runs
	// once a node qualifies.
	Unplaced string `json:"unplaced,omitempty"`
}

// InstanceName is the user-facing name of an instance: app/index.
func InstanceName(app string, index int) string {
	return app + "/" + strconv.Itoa(index)
}

// TermSize is a terminal's size for `shoal exec -t`.
type TermSize struct {
	Rows, Cols uint16
}

// PullRequest asks a node to pull an image from a registry.
type PullRequest struct {
	Ref      string `json:"ref"`
	Insecure bool   `json:"insecure,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// PullProgress is one line of a pull's progress stream; the last line
// carries Image or Error.
type PullProgress struct {
	Done  int64  `json:"done,omitempty"`
	Total int64  `json:"total,omitempty"`
	Image *Image `json:"image,omitempty"`
	Error string `json:"error,omitempty"`
}

// TokenResponse carries the join token (GET /v1/token).
type TokenResponse struct {
	Token string `json:"token"`
}

// LabelRequest sets and removes node labels (POST /v1/nodes/NAME/labels).
type LabelRequest struct {
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// CordonResult answers a drain: the apps it leaves without a node, each
// with the reason (the drain is done all the same).
type CordonResult struct {
	Unplaced []UnplacedApp `json:"unplaced,omitempty"`
}

// UnplacedApp is an app no node can take now, and why.
type UnplacedApp struct {
	App    string `json:"app"`
	Reason string `json:"reason"`
}

// CordonRequest drains a node (cordoned: its instances move and no new
// ones come) or lets it take instances again.
type CordonRequest struct {
	Cordoned bool `json:"cordoned"`
}

// LeaveRequest takes the node that receives it out of its cluster
// (POST /v1/leave). Wait bounds how long the node waits for its instances
// to run on other nodes before it stops them anyway; 0: DefaultLeaveWait.
type LeaveRequest struct {
	Wait Duration `json:"wait,omitempty"`
}

// DefaultLeaveWait is how long `shoal leave` waits, unless told, for a
// leaving node's instances to run elsewhere.
const DefaultLeaveWait = Duration(2 * time.Minute)

// LeaveResult says what became of a leaving node's instances: every one
// of its containers is stopped once the cluster let the node go.
type LeaveResult struct {
	Instances []LeftInstance `json:"instances"`
	// Stopped counts the containers the node stopped.
	Stopped int `json:"stopped"`
}

// LeftInstance is one instance that was placed on a leaving node.
type LeftInstance struct {
	Instance string `json:"instance"`
	// Node runs the instance now; empty when no node does.
	Node string `json:"node,omitempty"`
	// Note says why, in words: "running on b", or why it did not move.
	Note string `json:"note"`
}

// RestoreResult says what `shoal snapshot restore` brought back.
type RestoreResult struct {
	ClusterID string `json:"cluster_id"` // of the cluster the backup was taken from
	Apps      int    `json:"apps"`
	Nodes     int    `json:"nodes"`
}

// ScaleRequest sets replica counts (POST /v1/scale).
type ScaleRequest struct {
	Replicas map[string]int `json:"replicas"`
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/agent"
	"github.com/shoal-edge/shoal/cluster/apiserver"
	"github.com/shoal-edge/shoal/runtime/cgroup"
	"github.com/shoal-edge/shoal/store"
)

// instanceBackend answers `shoal ps`, `logs` and `run` (apiserver.Instances):
// every allocation with its observed state, the way to the node that runs
// an instance, this node's logs and one-off containers.
type instanceBackend struct {
	self         identity
	advertise    string
	cgroupParent string
	state        placementState
	view         instanceView
	live         liveGossip
	unplaced     unplacedReasons
	local        localProcesses
	voters       voterCheck
	peers        apiDialer
	oneOff       oneOffRunner
}

// instanceBackendConfig is what the instance backend needs.
type instanceBackendConfig struct {
	Self identity
	// Advertise is the address a host-network instance is reached at.
	Advertise string
	// CgroupParent holds the containers' cgroups: their CPU and memory.
	CgroupParent string
	State        placementState
	View         instanceView
	Live         liveGossip
	Unplaced     unplacedReasons
	Local        localProcesses
	// Voters says whether this node may pass a request on to another
	// (only a voter may), Peers how.
	Voters voterCheck
	Peers  apiDialer
	OneOff oneOffRunner
}

// placementState is what the instance backend reads of this replica.
type placementState interface {
	Snapshot() (store.State, error)
	App(name string) (api.App, error)
	Allocations() ([]api.Allocation, error)
	Nodes() ([]store.NodeRecord, error)
}

// instanceView is every instance's observed state as far as this node
// can learn it (reports.observed).
type instanceView interface {
	observed(ctx context.Context) (view map[string]api.InstanceStatus, known bool)
}

// localProcesses are the instances this node runs, and their logs (the
// agent).
type localProcesses interface {
	runningInstances
	LogPath(app string, index int) string
}

// voterCheck says whether a node is a voter, and refuses for one that is
// not, naming the voters (trust).
type voterCheck interface {
	isVoter(id string) bool
	notVoter() error
}

// apiDialer reaches another node's API over a transport that checks the
// node it reaches.
type apiDialer interface {
	peerTransport(id, name, instance string) http.RoundTripper
}

// oneOffRunner runs a one-off container (the node runtime).
type oneOffRunner interface {
	run(ctx context.Context, req api.RunRequest, stdin io.Reader, stdout, stderr io.Writer) (int, error)
}

var (
	_ apiserver.Instances = (*instanceBackend)(nil)
	_ placementState      = (*store.Store)(nil)
	_ instanceView        = (*reports)(nil)
	_ localProcesses      = (*agent.Agent)(nil)
	_ voterCheck          = (*trust)(nil)
	_ apiDialer           = (*Node)(nil)
	_ oneOffRunner        = (*nodeRuntime)(nil)
)

func newInstanceBackend(cfg instanceBackendConfig) *instanceBackend {
	return &instanceBackend{self: cfg.Self, advertise: cfg.Advertise, cgroupParent: cfg.CgroupParent, state: cfg.State,
		view: cfg.View, live: cfg.Live, unplaced: cfg.Unplaced, local: cfg.Local, voters: cfg.Voters, peers: cfg.Peers,
		oneOff: cfg.OneOff}
}

// PS lists instances: every allocation, with its observed state from the
// node that runs it (through the leader), this node's own always first-hand.
func (b *instanceBackend) PS(ctx context.Context, app string) ([]api.InstanceStatus, error) {
	self := b.self.Name
	st, err := b.state.Snapshot()
	if err != nil {
		return nil, err
	}
	allocs := st.Allocs
	observed, known := b.view.observed(ctx)
	live := map[string]bool{}
	for _, m := range b.live.liveMembers() {
		live[m.Name] = true
	}
	if app != "" {
		if _, err := b.state.App(app); err != nil {
			return nil, err
		}
	}
	var out []api.InstanceStatus
	for _, a := range allocs {
		if app != "" && a.App != app {
			continue
		}
		s, ok := observed[a.Instance()]
		if !ok || s.Node != a.Node {
			s = api.InstanceStatus{App: a.App, Instance: a.Instance(), Node: a.Node, Version: a.Version, State: api.StatePending}
			if !known && a.Node != self {
				s.State = api.StateUnknown
			}
		}
		// A node that is down reports nothing: what it last said, or
		// nothing at all (a new leader never heard it), is not news.
		if a.Node != self && !live[a.Node] {
			s.State = api.StateUnknown
		}
		s.IP = a.IP
		if s.Node == self {
			if s.IP == "" {
				s.IP = b.instanceIP(a.App)
			}
			b.usage(&s, a)
		} else {
			// A pid is a process of the device that runs the instance:
			// on this one it would name some other process.
			s.PID = 0
		}
		out = append(out, s)
	}
	// Instances no node can take have no allocation: without these rows
	// an app that cannot be placed would not show at all.
	placed := map[string]bool{}
	for _, a := range allocs {
		placed[a.Instance()] = true
	}
	version := map[string]uint64{}
	for _, a := range st.Apps {
		version[a.Name] = a.Version
	}
	for _, u := range b.unplaced.unplaceable(st.Apps, allocs, st.Nodes) {
		if (app != "" && u.App != app) || placed[api.InstanceName(u.App, u.Index)] {
			continue
		}
		out = append(out, api.InstanceStatus{App: u.App, Instance: api.InstanceName(u.App, u.Index), Version: version[u.App],
			State: api.StatePending, Error: "cannot be placed: " + u.Reason})
	}
	slices.SortStableFunc(out, func(a, b api.InstanceStatus) int {
		if c := strings.Compare(a.App, b.App); c != 0 {
			return c
		}
		return instanceIndex(a.Instance) - instanceIndex(b.Instance)
	})
	return out, nil
}

// instanceIndex is the index of an instance name app/index.
func instanceIndex(instance string) int {
	i, _ := strconv.Atoi(instance[strings.LastIndexByte(instance, '/')+1:])
	return i
}

// instanceIP is the address an instance is reached at until the bridge
// network gives each its own: host-network instances share the node's.
func (b *instanceBackend) instanceIP(app string) string {
	a, err := b.state.App(app)
	if err == nil && a.Network == api.NetworkHost {
		return b.advertise
	}
	return ""
}

// usage adds a running instance's CPU time and memory from its cgroup.
func (b *instanceBackend) usage(s *api.InstanceStatus, a api.Allocation) {
	p, ok := b.local.Process(a.App, a.Index)
	if !ok {
		return
	}
	h, ok := p.(interface{ ID() string })
	if !ok {
		return
	}
	cg, err := cgroup.Load(b.cgroupParent, h.ID())
	if err != nil {
		return
	}
	if st, err := cg.Stats(); err == nil {
		s.CPUSeconds = float64(st.CPUNanos) / 1e9
		s.MemoryBytes = st.MemoryBytes
	}
}

// Where is the cluster-port address of the node that runs app/index, and
// the way to reach its API; "" when it is this node or the instance is not
// placed.
func (b *instanceBackend) Where(ctx context.Context, app string, index int) (string, http.RoundTripper, error) {
	allocs, err := b.state.Allocations()
	if err != nil {
		return "", nil, err
	}
	for _, a := range allocs {
		if a.App != app || a.Index != index || a.Node == b.self.Name {
			continue
		}
		// The other node admits only voters and the admin credential.
		if !b.voters.isVoter(b.self.ID) {
			return "", nil, b.voters.notVoter()
		}
		recs, err := b.state.Nodes()
		if err != nil {
			return "", nil, err
		}
		for _, r := range recs {
			if r.Name == a.Node && r.Address != "" && r.Port != 0 {
				return net.JoinHostPort(r.Address, strconv.Itoa(r.Port)), b.peers.peerTransport(r.ID, r.Name, a.Instance()), nil
			}
		}
	}
	if !slices.ContainsFunc(allocs, func(a api.Allocation) bool { return a.App == app && a.Index == index }) {
		if reason, ok := b.pending(app, index); ok {
			return "", nil, fmt.Errorf("instance %s is pending: it cannot be placed: %s (shoal ps shows it): %w", api.InstanceName(app, index), reason, api.ErrNotFound)
		}
	}
	return "", nil, nil
}

// pending says why app/index cannot be placed now, if it is an instance
// no node can take.
func (b *instanceBackend) pending(app string, index int) (string, bool) {
	st, err := b.state.Snapshot()
	if err != nil {
		return "", false
	}
	apps := slices.DeleteFunc(st.Apps, func(a api.App) bool { return a.Name != app })
	for _, u := range b.unplaced.unplaceable(apps, st.Allocs, st.Nodes) {
		if u.Index == index {
			return u.Reason, true
		}
	}
	return "", false
}

// LogPath finds the log of app/index on this node.
func (b *instanceBackend) LogPath(ctx context.Context, app string, index int) (string, error) {
	allocs, err := b.state.Allocations()
	if err != nil {
		return "", err
	}
	for _, a := range allocs {
		if a.App == app && a.Index == index {
			if a.Node != b.self.Name {
				return "", fmt.Errorf("%s runs on node %s: ask that node (shoal --data-dir or --server): %w", a.Instance(), a.Node, api.ErrNotFound)
			}
			return b.local.LogPath(app, index), nil
		}
	}
	if _, err := b.state.App(app); errors.Is(err, api.ErrNotFound) {
		return "", err
	}
	return "", fmt.Errorf("instance %s: %w", api.InstanceName(app, index), api.ErrNotFound)
}

// RunContainer runs a one-off container outside scheduling and returns its
// exit code. Ending ctx (the client went away) stops the container.
func (b *instanceBackend) RunContainer(ctx context.Context, req api.RunRequest, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return b.oneOff.run(ctx, req, stdin, stdout, stderr)
}

package cluster

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/hashicorp/memberlist"
)

// nodeMeta travels with gossip so that the leader can register a node
// without asking it.
type nodeMeta struct {
	ID   string `json:"id"`
	Arch string `json:"arch"`
	OS   string `json:"os"`
	Port int    `json:"port"`
}

// members wraps memberlist. Its callbacks never block: they nudge the
// leader loop through a channel with room for one signal.
type members struct {
	ml      *memberlist.Memberlist
	meta    []byte
	changed chan struct{}
}

func newMembers(n *Node) (*members, error) {
	m := &members{changed: make(chan struct{}, 1)}
	var err error
	m.meta, err = json.Marshal(nodeMeta{ID: n.id.ID, Arch: goarch(), OS: runtime.GOOS, Port: n.cfg.Port})
	if err != nil {
		return nil, err
	}
	c := memberlist.DefaultLANConfig()
	c.Name = n.id.Name
	c.BindAddr = n.cfg.BindAddr
	c.BindPort = n.cfg.GossipPort
	c.AdvertiseAddr = n.advertise
	c.AdvertisePort = n.cfg.GossipPort
	c.Delegate = m
	c.Events = m
	c.Logger = stdlogFor(n.log)
	m.ml, err = memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("gossip on %s:%d: %w", n.cfg.BindAddr, n.cfg.GossipPort, err)
	}
	return m, nil
}

// goarch names the architecture as placement.arch does: arm means v7.
func goarch() string { return runtime.GOARCH }

func (m *members) nudge() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// memberlist.Delegate
func (m *members) NodeMeta(limit int) []byte                  { return m.meta }
func (m *members) NotifyMsg([]byte)                           {}
func (m *members) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (m *members) LocalState(join bool) []byte                { return nil }
func (m *members) MergeRemoteState(buf []byte, join bool)     {}

// memberlist.EventDelegate
func (m *members) NotifyJoin(*memberlist.Node)   { m.nudge() }
func (m *members) NotifyLeave(*memberlist.Node)  { m.nudge() }
func (m *members) NotifyUpdate(*memberlist.Node) { m.nudge() }

// member is one gossip member as the leader needs it.
type member struct {
	Name  string
	Addr  string
	State string
	Meta  nodeMeta
}

func (m *members) list() []member {
	var out []member
	for _, n := range m.ml.Members() {
		mb := member{Name: n.Name, Addr: n.Addr.String(), State: stateName(n.State)}
		json.Unmarshal(n.Meta, &mb.Meta)
		out = append(out, mb)
	}
	return out
}

func stateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateLeft:
		return "left"
	}
	return "dead"
}

func (m *members) close() error {
	if m.ml == nil {
		return nil
	}
	return m.ml.Shutdown()
}

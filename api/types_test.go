package api

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The named types of states and policies are plain strings on the wire, as
// they were when they were strings: older CLIs, daemons and state files
// read them.
func TestNamedStringsOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		json string
	}{
		{"app", &App{Name: "web", Image: "web:1", Mode: ModeGlobal, Restart: RestartOnFailure, Network: NetworkHost},
			`{"name":"web","image":"web:1","mode":"global","placement":{},"resources":{},"restart":"on-failure","network":"host"}`},
		{"run", &RunRequest{Image: "bb:1", Network: NetworkBridge},
			`{"image":"bb:1","network":"bridge","rm":false}`},
		{"instance", &InstanceStatus{App: "web", Instance: "web/0", Node: "a", Version: 3, State: StateUnhealthy, IP: "10.0.0.2"},
			`{"app":"web","instance":"web/0","node":"a","version":3,"state":"unhealthy","restarts":0,"ip":"10.0.0.2","exit_code":0}`},
		{"node", &Node{Name: "a", ID: "1", Address: "10.0.0.1", Arch: "arm64", OS: "linux", Labels: map[string]string{}, Role: RoleNonVoter, State: NodeSuspect},
			`{"name":"a","id":"1","address":"10.0.0.1","arch":"arm64","os":"linux","labels":{},"role":"non-voter","state":"suspect","instances":0}`},
		{"status", &ClusterStatus{Node: "a", Role: RoleVoter, State: "Leader", Voters: []string{"a"}, Health: "healthy"},
			`{"cluster_id":"","leader":"","node":"a","role":"voter","state":"Leader","term":0,"commit_index":0,"applied_index":0,"voters":["a"],"stale":false,"health":"healthy"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.json {
				t.Errorf("marshal = %s\nwant      %s", b, tc.json)
			}
			back := newOf(tc.v)
			if err := json.Unmarshal([]byte(tc.json), back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, tc.v) {
				t.Errorf("unmarshal = %+v, want %+v", back, tc.v)
			}
		})
	}
}

func newOf(v any) any {
	switch v.(type) {
	case *App:
		return new(App)
	case *InstanceStatus:
		return new(InstanceStatus)
	case *RunRequest:
		return new(RunRequest)
	case *Node:
		return new(Node)
	case *ClusterStatus:
		return new(ClusterStatus)
	}
	panic("newOf: add the type")
}

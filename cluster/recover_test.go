package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// Recover alone, on a stopped node's data dir (identity, certificate and
// CA key, a real state file and Raft stores) whose cluster of two voters
// lost the other: refused while the data dir is in use; done, the node is
// the lone voter of the next epoch and leads alone over the state it had.
func TestRecoverAlone(t *testing.T) {
	a, b := newRaftPartsNode(t), newRaftPartsNode(t)
	id := identity{Name: "a", ID: "id-a"}
	if err := writeIdentity(a.dir, id); err != nil {
		t.Fatal(err)
	}
	if _, err := bootstrapMaterial(a.dir, id); err != nil {
		t.Fatal(err)
	}
	a.open(t, id.ID, "127.0.0.1:0", true)
	b.open(t, "id-b", "127.0.0.1:0", false)
	testutil.WaitFor(t, 10*time.Second, func() error {
		if s := a.p.r().State(); s != raft.Leader {
			return fmt.Errorf("a is %s", s)
		}
		return nil
	})
	if err := a.p.r().AddVoter("id-b", b.p.trans.LocalAddr(), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	applyOnLeader(t, "n1", a, b)
	a.close(t)
	b.close(t)
	a.st.Close()

	lock, err := lockDataDir(a.dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Recover(a.dir, testutil.Logger(t)); err == nil {
		t.Error("recovered a data dir in use")
	}
	lock.Close()
	name, err := Recover(a.dir, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if name != "a" {
		t.Errorf("recovered node %q, want a", name)
	}
	if e, err := readEpoch(a.dir); err != nil || e != 1 {
		t.Errorf("epoch after the recovery %d (%v), want 1", e, err)
	}

	r := raftPartsNodeAt(t, a.dir)
	r.epoch.Store(1)
	r.open(t, id.ID, a.port.addr, false)
	if !r.p.isFast() {
		t.Error("the recovered node runs a cluster's timeouts: it is the lone voter")
	}
	cf := r.p.r().GetConfiguration()
	if err := cf.Error(); err != nil {
		t.Fatal(err)
	}
	if servers := cf.Configuration().Servers; len(servers) != 1 || servers[0].ID != raft.ServerID(id.ID) || servers[0].Suffrage != raft.Voter {
		t.Errorf("Raft's configuration after the recovery: %+v", servers)
	}
	applyOnLeader(t, "n2", r)
	nodes, err := r.st.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 {
		t.Errorf("the recovered state holds %d nodes, want n1 and n2", len(nodes))
	}
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// ownInstances is an agent's view of the instances it runs.
type ownInstances []api.InstanceStatus

func (o ownInstances) Status() []api.InstanceStatus { return o }

// namedPeers takes the calling node from the request's Peer header, as
// the cluster port takes it from the certificate.
type namedPeers struct{}

func (namedPeers) peerOf(r *http.Request) *pki.NodeIdentity {
	name := r.Header.Get("Peer")
	if name == "" {
		return nil
	}
	return &pki.NodeIdentity{Name: name, ID: name}
}

func (namedPeers) isNode(peer pki.NodeIdentity, name string) bool { return peer.Name == name }

// reportCaller is node from calling the leader's reports in process, or
// failing to reach it while down.
type reportCaller struct {
	from   string
	leader *reports
	down   atomic.Bool
}

func (c *reportCaller) nodeRequest(ctx context.Context, method string, addr raft.ServerAddress, path string, body io.Reader) (*http.Response, error) {
	if c.down.Load() {
		return nil, &dialError{errors.New("the leader is cut off")}
	}
	req := httptest.NewRequestWithContext(ctx, method, "https://node"+path, body)
	req.Header.Set("Peer", c.from)
	rec := httptest.NewRecorder()
	switch path {
	case "/v1/report":
		c.leader.serve(rec, req)
	case "/v1/ps":
		c.leader.servePS(rec, req)
	default:
		return nil, &dialError{fmt.Errorf("no node serves %s", path)}
	}
	return rec.Result(), nil
}

// Reports alone, on a real Raft of a voter and a non-voter over loopback:
// the follower sends its instances to the leader, which answers the
// follower's ps with every node's view; a node may report only its own
// instances; a node gossip lost shows unknown; a follower that cannot
// reach the leader knows only its own instances; a new term forgets the
// views of the old.
func TestReportsAlone(t *testing.T) {
	// b follows without a vote: a keeps leading however slow the test.
	a, b := leaderAndFollower(t, false)
	live := &fakeMembers{}
	live.set(liveSet{"a", "b"}.liveMembers()...)
	onA := ownInstances{{App: "web", Instance: "web/0", Node: "a", State: api.StateRunning}}
	onB := ownInstances{{App: "web", Instance: "web/1", Node: "b", State: api.StateRunning}}
	ra := newReports(identity{Name: "a", ID: "a"}, fixedRaft{a.r}, onA, live, nil, namedPeers{}, testutil.Logger(t))
	toA := &reportCaller{from: "b", leader: ra}
	rb := newReports(identity{Name: "b", ID: "b"}, fixedRaft{b.r}, onB, live, toA, namedPeers{}, testutil.Logger(t))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, rp := range []*reports{ra, rb} {
		wg.Go(func() { rp.run(ctx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })

	testutil.WaitFor(t, 10*time.Second, func() error {
		view, known := rb.observed(ctx)
		if !known || view["web/0"].State != api.StateRunning || view["web/1"].State != api.StateRunning {
			return fmt.Errorf("b observes %+v (known %v)", view, known)
		}
		return nil
	})

	for _, forged := range []struct{ peer, body string }{
		{"b", `{"node":"b","instances":[{"app":"web","instance":"web/0","node":"a","state":"exited"}]}`},
		{"c", `{"node":"b","instances":[{"app":"web","instance":"web/1","node":"b","state":"exited"}]}`},
	} {
		req := httptest.NewRequest(http.MethodPost, "/v1/report", strings.NewReader(forged.body))
		req.Header.Set("Peer", forged.peer)
		rec := httptest.NewRecorder()
		ra.serve(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("node %s reports %s: %d, want 403", forged.peer, forged.body, rec.Code)
		}
	}
	if view := ra.clusterView(); view["web/0"].State != api.StateRunning || view["web/1"].State != api.StateRunning {
		t.Errorf("after forged reports the leader's view is %+v", view)
	}

	live.set(liveSet{"a"}.liveMembers()...)
	if got := ra.clusterView()["web/1"].State; got != api.StateUnknown {
		t.Errorf("an instance of a node gossip lost is %q, want unknown", got)
	}

	toA.down.Store(true)
	view, known := rb.observed(ctx)
	if known || view["web/1"].State != api.StateRunning {
		t.Errorf("cut off from the leader b observes %+v (known %v), want its own instance only", view, known)
	}
	if _, ok := view["web/0"]; ok {
		t.Errorf("cut off from the leader b still observes web/0: %+v", view)
	}

	term := a.r.CurrentTerm()
	ra.forgetReports(term)
	if _, ok := ra.clusterView()["web/1"]; !ok {
		t.Errorf("the term's own start forgot a view sent in it: %+v", ra.clusterView())
	}
	ra.forgetReports(term + 1)
	if _, ok := ra.clusterView()["web/1"]; ok {
		t.Errorf("a new term keeps an old term's view of b: %+v", ra.clusterView())
	}
}

// A node sends its view again when it changed, when the leader changed,
// when the leader's term changed (re-elected, it forgot the views of its
// last term), and every refreshEvery; not otherwise.
func TestReportDue(t *testing.T) {
	now := time.Now()
	running := []api.InstanceStatus{{Instance: "web/0", State: api.StateRunning}}
	last := lastReport{leader: "a", term: 4, at: now, instances: running}
	for _, c := range []struct {
		name   string
		leader raft.ServerID
		term   uint64
		cur    []api.InstanceStatus
		at     time.Time
		want   bool
	}{
		{"nothing new", "a", 4, running, now.Add(time.Second), false},
		{"another leader", "b", 4, running, now.Add(time.Second), true},
		{"same leader, new term", "a", 5, running, now.Add(time.Second), true},
		{"a change", "a", 4, []api.InstanceStatus{{Instance: "web/0", State: api.StateExited}}, now.Add(time.Second), true},
		{"the refresh", "a", 4, running, now.Add(refreshEvery), true},
	} {
		if got := last.due(c.leader, c.term, c.cur, c.at); got != c.want {
			t.Errorf("%s: due %v, want %v", c.name, got, c.want)
		}
	}
}

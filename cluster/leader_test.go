package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/store"
)

// startStoreRaft runs a lone voter whose state machine is st.
func startStoreRaft(t *testing.T, st *store.Store) *raft.Raft {
	t.Helper()
	conf := raft.DefaultConfig()
	conf.LocalID = "a"
	conf.Logger = hclogFor(testutil.Logger(t), "raft")
	conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	_, trans := raft.NewInmemTransport("a")
	logs := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	cfg := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: trans.LocalAddr(), Suffrage: raft.Voter}}}
	if err := raft.BootstrapCluster(conf, logs, logs, snaps, trans, cfg); err != nil {
		t.Fatal(err)
	}
	r, err := raft.NewRaft(conf, st.FSM(), logs, logs, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown().Error() })
	testutil.WaitFor(t, 10*time.Second, func() error {
		if r.State() != raft.Leader {
			return fmt.Errorf("raft is %s", r.State())
		}
		return nil
	})
	return r
}

// okDisk has room for every write.
type okDisk struct{}

func (okDisk) checkDiskForWrite(int) error { return nil }
func (okDisk) asNotVoter(err error) error  { return err }

// fakeMembers are gossip members set by the test, every one verified.
type fakeMembers struct {
	changed chan struct{}

	mu   sync.Mutex
	live []member
}

func (f *fakeMembers) set(ms ...member) {
	f.mu.Lock()
	f.live = ms
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *fakeMembers) liveMembers() []member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.live)
}

func (f *fakeMembers) verifiedMembers(context.Context) []member { return f.liveMembers() }

// calls records what a fake was asked, in order.
type calls struct {
	mu   sync.Mutex
	list []string
}

func (c *calls) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, s)
}

func (c *calls) count(s string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, x := range c.list {
		if x == s {
			n++
		}
	}
	return n
}

func (c *calls) since(i int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.list[min(i, len(c.list)):])
}

func (c *calls) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.list)
}

// fakeTerm stands in for the restarter, autopilot and the reports.
type fakeTerm struct {
	calls
	unfit atomic.Bool // the node is unfit to lead
}

func (f *fakeTerm) handOver() error { f.add("hand over"); return nil }
func (f *fakeTerm) unfitToLead() error {
	if f.unfit.Load() {
		return errors.New("disk full")
	}
	return nil
}
func (f *fakeTerm) relaxRaft() error { f.add("relax"); return nil }
func (f *fakeTerm) rejoin(e uint64) error {
	f.add(fmt.Sprintf("rejoin %d", e))
	return nil
}
func (f *fakeTerm) newTerm() { f.add("autopilot new term") }
func (f *fakeTerm) pass(_ context.Context, _ *slog.Logger, ms []member) error {
	f.add("autopilot pass")
	return nil
}
func (f *fakeTerm) forgetReports(uint64) { f.add("forget reports") }

// noCAKey is a node without the CA's key; the records never need it
// without a previous release's secrets.
type noCAKey struct{}

func (noCAKey) get() *pki.CA     { return nil }
func (noCAKey) put([]byte) error { return errors.New("no CA key here") }

func gossipMember(name string, labels map[string]string) member {
	return member{Name: name, Addr: "127.0.0.1", GossipAddr: "127.0.0.1:7946", GossipPort: 7946, State: api.NodeAlive,
		Meta: nodeMeta{ID: "id-" + name, Arch: goarch(), OS: "linux", Port: 7000, Labels: labels}}
}

// The leader alone, on a real lone Raft whose state machine is a real
// state file: a term starts on Raft's word, writes the cluster's id,
// registers the verified members (labels from gossip), and places an
// app's instances on live nodes; a node gone from gossip is timed as gone
// and its instance moves once its app's reschedule_after has passed.
// Losing leadership stops the term's loop; a relax hands leadership over
// then restarts Raft, a rejoin drops Raft's state, neither while a loop
// runs; a new term forgets what the old one reported and timed.
func TestLeaderAlone(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := startStoreRaft(t, st)
	w := newWrites("a", fixedRaft{r}, nil, okDisk{}, okDisk{})
	members := &fakeMembers{changed: make(chan struct{}, 1)}
	members.set(gossipMember("a", nil), gossipMember("b", map[string]string{"zone": "x"}))
	notify, relax, rejoin := make(chan bool, 1), make(chan struct{}, 1), make(chan uint64, 1)
	term := &fakeTerm{}
	dataDir := t.TempDir()
	l := newLeader(leaderConfig{
		Notify: notify, Relax: relax, Rejoin: rejoin, HandOver: term, Restarter: term,
		Raft: fixedRaft{r}, State: st, Writes: w, Members: members, MembersChanged: members.changed,
		Autopilot: term,
		Records:   newClusterRecords(dataDir, st, w, noCAKey{}, fixedRaft{r}, testutil.Logger(t)),
		Reports:   term,
		Logger:    testutil.Logger(t),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	notify <- true
	testutil.WaitFor(t, 10*time.Second, func() error {
		if id, _ := st.ClusterID(); id == "" {
			return errors.New("no cluster id")
		}
		recs, _ := st.Nodes()
		got := map[string]store.NodeRecord{}
		for _, rec := range recs {
			got[rec.Name] = rec
		}
		if len(got) != 2 || got["b"].ID != "id-b" || got["b"].Port != 7000 || !maps.Equal(got["b"].Labels, map[string]string{"zone": "x"}) {
			return fmt.Errorf("registry %+v", recs)
		}
		return nil
	})
	app := api.App{Name: "web", Image: "busybox", Replicas: 2, RescheduleAfter: api.Duration(time.Second)}
	app.Defaults()
	if _, err := w.applyLocal(store.PutApps{Apps: []api.App{app}}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	placed := func(want ...string) func() error {
		return func() error {
			allocs, err := st.Allocations()
			if err != nil {
				return err
			}
			var on []string
			for _, a := range allocs {
				on = append(on, a.Node)
			}
			slices.Sort(on)
			if !slices.Equal(on, want) {
				return fmt.Errorf("instances on %v, want %v", on, want)
			}
			return nil
		}
	}
	testutil.WaitFor(t, 10*time.Second, placed("a", "b"))

	members.set(gossipMember("a", nil))
	testutil.WaitFor(t, 10*time.Second, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if _, ok := l.deadSince["b"]; !ok {
			return errors.New("b's absence is not timed")
		}
		return nil
	})
	testutil.WaitFor(t, 20*time.Second, placed("a", "a"))
	if n := term.count("autopilot pass"); n == 0 {
		t.Error("no autopilot pass")
	}

	mark := term.len()
	notify <- false
	relax <- struct{}{}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if term.count("relax") == 0 {
			return errors.New("no relax")
		}
		return nil
	})
	rejoin <- 7
	testutil.WaitFor(t, 10*time.Second, func() error {
		if term.count("rejoin 7") == 0 {
			return errors.New("no rejoin")
		}
		return nil
	})
	after := term.since(mark)
	i := slices.Index(after, "hand over")
	if got, want := after[max(i, 0):], []string{"hand over", "relax", "rejoin 7"}; !slices.Equal(got, want) {
		t.Errorf("after the term: %v, want %v and no autopilot pass", after, want)
	}

	before := time.Now()
	notify <- true
	testutil.WaitFor(t, 10*time.Second, func() error {
		if term.count("forget reports") != 2 || term.count("autopilot new term") != 2 {
			return fmt.Errorf("calls %v", term.since(mark))
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		// b is registered and still gone: the new term times it anew.
		if since, ok := l.deadSince["b"]; !ok || since.Before(before) {
			return fmt.Errorf("b gone since %v in the new term, which began at %v", since, before)
		}
		return nil
	})
}

// A leader unfit to lead (a full disk) hands leadership over as its term
// begins, before the barrier its state file may never pass, and again
// every unfitRecheck while it leads and is unfit; a fit one does not.
func TestLeaderUnfitHandsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		term := &fakeTerm{}
		term.unfit.Store(true)
		l := &leader{handOver: term, log: slog.New(slog.DiscardHandler)}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.handOverWhileUnfit(ctx, l.log)
		}()
		synctest.Wait()
		if n := term.count("hand over"); n != 1 {
			t.Errorf("%d hand-overs as the term began unfit, want 1", n)
		}
		time.Sleep(2 * unfitRecheck)
		synctest.Wait()
		if n := term.count("hand over"); n != 3 {
			t.Errorf("%d hand-overs after two rechecks, want 3", n)
		}
		term.unfit.Store(false)
		time.Sleep(2 * unfitRecheck)
		synctest.Wait()
		if n := term.count("hand over"); n != 3 {
			t.Errorf("%d hand-overs once fit again, want still 3", n)
		}
		cancel()
		<-done
	})
}

package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"sync"
	"time"

	"github.com/shoal-edge/shoal/cluster/sched"
	"github.com/shoal-edge/shoal/store"
)

// leader is this node's part in leadership: for every term this node
// leads it runs the leader's loop (registration of members, autopilot,
// scheduling), and between terms the Raft restarts the node asks for,
// which no term's loop may outlive.
//
// run owns the loop: a term's loop starts on a true from Raft's notify
// channel and is stopped, and waited for, before anything else happens.
// The dead-node times (deadSince) are the loop's alone; mu only makes
// them safe to read from a test.
type leader struct {
	notify    <-chan bool
	relax     <-chan struct{}
	rejoinTo  <-chan uint64
	handOver  leadershipHandOver
	restarter raftRestarter

	raft    runningRaft
	state   leaderState
	writes  localWriter
	members leaderMembers
	changed <-chan struct{} // a member came, went or changed
	pilot   termPilot
	records termRecords
	reports reportsForgetter
	log     *slog.Logger

	mu        sync.Mutex           // guards following
	deadSince map[string]time.Time // registered nodes gone from gossip, since (this term)
}

// leaderConfig is what the leader works with. Every field is required but
// Logger.
type leaderConfig struct {
	// Notify is Raft's NotifyCh: true when this node won an election,
	// false when it lost leadership.
	Notify <-chan bool
	// Relax asks for Raft's restart with a cluster's timeouts
	// (autopilot sends it), Rejoin for the drop of this node's Raft
	// state to rejoin at a newer epoch (the gossip upkeep sends it).
	Relax     <-chan struct{}
	Rejoin    <-chan uint64
	HandOver  leadershipHandOver
	Restarter raftRestarter

	Raft    runningRaft
	State   leaderState
	Writes  localWriter
	Members leaderMembers
	// MembersChanged signals that a member came, went or changed.
	MembersChanged <-chan struct{}
	Autopilot      termPilot
	Records        termRecords
	Reports        reportsForgetter
	Logger         *slog.Logger
}

// leadershipHandOver hands leadership to another voter (before Raft's
// restart with a cluster's timeouts, or while this node is unfit to lead)
// and says whether this node is unfit to lead: its state file takes no
// entry, or its disk has no room for a write.
type leadershipHandOver interface {
	handOver() error
	unfitToLead() error
}

// unfitRecheck is how often a leader unfit to lead tries again to hand
// leadership over.
const unfitRecheck = 5 * time.Second

// raftRestarter restarts Raft between terms: with a cluster's timeouts
// (relaxRaft), or with Raft's state dropped for a newer epoch (rejoin).
type raftRestarter interface {
	relaxRaft() error
	rejoin(epoch uint64) error
}

// leaderState is the replicated state the leader plans on.
type leaderState interface {
	Changed() <-chan struct{}
	Nodes() ([]store.NodeRecord, error)
	Snapshot() (store.State, error)
}

// localWriter applies a command on this node, the leader (writes.applyLocal).
type localWriter interface {
	applyLocal(cmd any, timeout time.Duration) (any, error)
}

// leaderMembers are the gossip members as the leader counts them: live
// ones (alive in gossip, not revoked) and, of those, the ones whose
// certificate backs their gossip (registered, and given to Raft).
type leaderMembers interface {
	liveMembers() []member
	verifiedMembers(ctx context.Context) []member
}

// termPilot keeps Raft's configuration in step with the members
// (autopilot); newTerm forgets what an earlier term timed.
type termPilot interface {
	newTerm()
	pass(ctx context.Context, log *slog.Logger, members []member) error
}

// termRecords are the records a term puts in Raft before it plans: the
// cluster's id and secrets from bootstrap, and the move of the previous
// release's secrets out of the clear (clusterRecords).
type termRecords interface {
	writeBootstrap() error
	migrateSecrets(log *slog.Logger) error
}

// reportsForgetter drops the instance views reported to a term before
// the one given.
type reportsForgetter interface {
	forgetReports(term uint64)
}

var (
	_ leadershipHandOver = (*Node)(nil)
	_ raftRestarter      = (*raftParts)(nil)
	_ leaderState        = (*store.Store)(nil)
	_ localWriter        = (*writes)(nil)
	_ leaderMembers      = (*gossipUpkeep)(nil)
	_ termPilot          = (*autopilot)(nil)
	_ termRecords        = (*clusterRecords)(nil)
	_ reportsForgetter   = (*reports)(nil)
)

func newLeader(cfg leaderConfig) *leader {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &leader{notify: cfg.Notify, relax: cfg.Relax, rejoinTo: cfg.Rejoin, handOver: cfg.HandOver, restarter: cfg.Restarter,
		raft: cfg.Raft, state: cfg.State, writes: cfg.Writes, members: cfg.Members, changed: cfg.MembersChanged,
		pilot: cfg.Autopilot, records: cfg.Records, reports: cfg.Reports, log: cfg.Logger,
		deadSince: map[string]time.Time{}}
}

// run starts the leader loop when this node wins an election and stops it
// when it loses leadership, until ctx ends.
func (l *leader) run(ctx context.Context) error {
	var running *leaderRun
	defer func() { running.stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case isLeader := <-l.notify:
			running.stop()
			running = nil
			if isLeader {
				running = l.startTerm(ctx)
			}
		case <-l.relax:
			// The restart ends this term: its loop stops first. Handing
			// leadership to another voter (which runs a cluster's
			// timeouts already) spares the cluster the election.
			running.stop()
			running = nil
			if err := l.handOver.handOver(); err != nil {
				l.log.Info("hand leadership over before the raft restart", "err", err)
			}
			if err := l.restarter.relaxRaft(); err != nil {
				l.log.Error("restart raft", "err", err)
			}
		case e := <-l.rejoinTo:
			running.stop()
			running = nil
			if err := l.restarter.rejoin(e); err != nil {
				l.log.Error("rejoin after a recovery", "err", err)
			}
		}
	}
}

// leaderRun is one term of leadership's loop.
type leaderRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (l *leader) startTerm(ctx context.Context) *leaderRun {
	lctx, cancel := context.WithCancel(ctx)
	lr := &leaderRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(lr.done)
		l.lead(lctx)
	}()
	return lr
}

func (lr *leaderRun) stop() {
	if lr == nil {
		return
	}
	lr.cancel()
	<-lr.done
}

// handOverWhileUnfit hands leadership to another voter whenever this node
// is unfit to lead, until ctx ends (the term does). A voter whose disk is
// full still wins elections (its log is as long as any), and a hand-over
// asked once when it stalled, as a follower then, is not enough.
func (l *leader) handOverWhileUnfit(ctx context.Context, log *slog.Logger) {
	tick := time.NewTicker(unfitRecheck)
	defer tick.Stop()
	// Said once a term: a lone voter has nobody to hand over to, and
	// would say it every few seconds.
	warn := log.Warn
	for {
		if err := l.handOver.unfitToLead(); err != nil {
			warn("unfit to lead: handing leadership to another voter", "err", err)
			if err := l.handOver.handOver(); err != nil {
				warn("hand leadership over", "err", err)
			}
			warn = log.Debug
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// lead runs only on the leader: it registers members in the node
// registry and turns apps into allocations. It starts with a barrier so it
// plans against everything earlier leaders committed.
func (l *leader) lead(ctx context.Context) {
	log := l.log.With("component", "leader")
	log.Info("leading the cluster")
	// Before the barrier, which a state file that takes no entry never
	// passes: such a leader answers no write, and holds up the cluster's.
	var unfit sync.WaitGroup
	defer unfit.Wait()
	unfit.Go(func() { l.handOverWhileUnfit(ctx, log) })
	// Views reported to an earlier term of this node may be stale; the
	// nodes send theirs again to a new leader.
	l.reports.forgetReports(l.raft.r().CurrentTerm())
	// Absences timed by an earlier term are not this term's: a node gone
	// briefly now must not count hours of an old absence.
	l.mu.Lock()
	clear(l.deadSince)
	l.mu.Unlock()
	l.pilot.newTerm()
	if err := l.raft.r().Barrier(10 * time.Second).Error(); err != nil {
		log.Error("barrier", "err", err)
		return
	}
	if err := l.records.writeBootstrap(); err != nil {
		log.Error("write the cluster's id and secrets", "err", err)
		return
	}
	// Not fatal: the cluster keeps working on the old record meanwhile;
	// the next term tries again.
	if err := l.records.migrateSecrets(log); err != nil {
		log.Error("move the cluster's secrets out of the clear", "err", err)
	}
	// A periodic pass catches deadlines (reschedule_after) no event marks.
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		changed := l.state.Changed()
		members := l.members.verifiedMembers(ctx)
		if err := l.registerMembers(members); err != nil {
			log.Warn("register nodes", "err", err)
		}
		if err := l.pilot.pass(ctx, log, members); err != nil {
			log.Warn("autopilot", "err", err)
		}
		if err := l.schedule(); err != nil {
			log.Warn("schedule", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-l.changed:
		case <-tick.C:
		}
	}
}

// registerMembers records new nodes and changed addresses in Raft. A new
// node's labels are its --label, from its gossip metadata; a known node
// keeps its labels: only what gossip is the authority on changes.
func (l *leader) registerMembers(members []member) error {
	recs, err := l.state.Nodes()
	if err != nil {
		return err
	}
	known := map[string]store.NodeRecord{}
	for _, r := range recs {
		known[r.Name] = r
	}
	for _, m := range members {
		rec, ok := known[m.Name]
		want := rec
		want.Name, want.ID, want.Address, want.Arch, want.OS = m.Name, m.Meta.ID, m.Addr, m.Meta.Arch, m.Meta.OS
		want.Port, want.GossipPort = m.Meta.Port, m.GossipPort
		// Labels come with the node's first registration only: later,
		// `shoal label` owns them.
		if !ok && len(m.Meta.Labels) > 0 {
			want.Labels = maps.Clone(m.Meta.Labels)
		}
		if ok && reflect.DeepEqual(rec, want) {
			continue
		}
		if _, err := l.writes.applyLocal(store.NodeFacts{Node: want}, 10*time.Second); err != nil {
			return fmt.Errorf("register %s: %w", m.Name, err)
		}
	}
	return nil
}

// liveness joins the registry with gossip: alive nodes, and since when the
// others have been gone (as far as this leader knows).
func (l *leader) liveness(recs []store.NodeRecord) map[string]sched.Node {
	live := map[string]bool{}
	for _, m := range l.members.liveMembers() {
		live[m.Name] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	out := map[string]sched.Node{}
	for _, r := range recs {
		alive := live[r.Name]
		sn := sched.Node{Name: r.Name, Arch: r.Arch, Labels: r.Labels, Alive: alive, Cordoned: r.Cordoned}
		if alive {
			delete(l.deadSince, r.Name)
		} else {
			if _, ok := l.deadSince[r.Name]; !ok {
				l.deadSince[r.Name] = now
			}
			sn.DeadSince = l.deadSince[r.Name]
		}
		out[r.Name] = sn
	}
	return out
}

func (l *leader) schedule() error {
	st, err := l.state.Snapshot()
	if err != nil {
		return err
	}
	live := l.liveness(st.Nodes)
	in := sched.State{Apps: st.Apps, Allocs: st.Allocs, Now: time.Now()}
	for _, r := range st.Nodes {
		in.Nodes = append(in.Nodes, live[r.Name])
	}
	plan := sched.Compute(in)
	if plan.Empty() {
		return nil
	}
	cmd := store.SetAllocs{Put: plan.Put}
	for _, a := range plan.Delete {
		cmd.Delete = append(cmd.Delete, store.AllocKey{App: a.App, Index: a.Index})
	}
	_, err = l.writes.applyLocal(cmd, 10*time.Second)
	return err
}

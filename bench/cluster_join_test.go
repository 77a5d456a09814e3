package bench

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// BenchmarkClusterJoin times the growth of a fresh cluster in a lab, on
// default settings (three voters):
//
//   - "voters": nodes b and c are started together with `shoal up --join`
//     against a bootstrapped a, until a's status names a, b and c as the
//     voters and b and c follow the leader (a second node waits as a
//     non-voter for the third, so both joins are in the figure);
//   - "member": a fourth node d is started the same way, until a's
//     `nodes` shows it alive and d follows the leader (it is a Raft server,
//     a non-voter, receiving the log) with the cluster's id replicated.
//
// Every iteration builds a new lab and bootstraps a new cluster; the
// bootstrap is not timed (see e2e's BenchmarkBootstrapToLeader). It
// reports the medians and p90s as "voters-ms" and "member-ms".
func BenchmarkClusterJoin(b *testing.B) {
	testutil.RequireRoot(b)
	logLoad(b, "before")
	defer logLoad(b, "after")
	var voters, member []time.Duration
	for b.Loop() {
		lc := newLabCluster(b, false)
		lc.add("a", "b", "c", "d")
		lc.bootstrap("a")
		a := lc.nodes["a"].c

		start := time.Now()
		for _, n := range []string{"b", "c"} {
			if err := lc.start(n); err != nil {
				b.Fatal(err)
			}
		}
		took, err := waitUntil(start, formTimeout, pollFast, func() error {
			if err := lc.running([]string{"b", "c"}); err != nil {
				return err
			}
			st, err := status(a)
			if err != nil {
				return err
			}
			if want := []string{"a", "b", "c"}; !slices.Equal(st.Voters, want) {
				return fmt.Errorf("voters %v, want %v", st.Voters, want)
			}
			return follows(lc, st.Leader, "b", "c")
		})
		if err != nil {
			b.Fatalf("b and c not voters after %v: %v", formTimeout, err)
		}
		voters = append(voters, took)
		b.Logf("iteration %d: b and c voters after %.1f ms", len(voters)-1, ms(took))

		start = time.Now()
		if err := lc.start("d"); err != nil {
			b.Fatal(err)
		}
		took, err = waitUntil(start, formTimeout, pollFast, func() error {
			if err := lc.running([]string{"d"}); err != nil {
				return err
			}
			ns, err := nodeList(a)
			if err != nil {
				return err
			}
			i := slices.IndexFunc(ns, func(n api.Node) bool { return n.Name == "d" })
			if i < 0 || ns[i].State != "alive" {
				return fmt.Errorf("a does not see d alive: %+v", ns)
			}
			st, err := status(a)
			if err != nil {
				return err
			}
			return follows(lc, st.Leader, "d")
		})
		if err != nil {
			b.Fatalf("d not a member after %v: %v", formTimeout, err)
		}
		member = append(member, took)
		// The next iteration's lab starts from an idle machine.
		for _, n := range lc.names {
			lc.lab.Kill9(n)
		}
	}
	reportDurations(b, "voters", voters)
	reportDurations(b, "member", member)
}

// follows checks that each node named follows leader and holds the
// cluster's id: it is a Raft server to which the leader replicates.
func follows(lc *labCluster, leader string, names ...string) error {
	if leader == "" {
		return errors.New("no leader")
	}
	for _, n := range names {
		st, err := status(lc.nodes[n].c)
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		if st.Leader != leader || st.ClusterID == "" {
			return fmt.Errorf("%s follows %q, cluster %q", n, st.Leader, st.ClusterID)
		}
	}
	return nil
}

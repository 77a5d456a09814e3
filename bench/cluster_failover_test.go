package bench

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
)

var powerLoss = flag.Bool("failover-powerloss", false, "BenchmarkClusterFailover: cut the killed leader off the network too, as if it had lost power")

// BenchmarkClusterFailover kills the leader of three voters with SIGKILL
// and times until a write (a label) through a survivor's API is accepted:
// the followers notice the silence, elect a new leader, and the write
// commits on the two of three voters. A write is sent every 10 ms from the
// kill on, each waiting as long as shoal makes it; the figure is the
// first one accepted, so a write that hangs on the dead leader does not
// hide the moment the cluster takes writes again. The log says what
// became of the write sent at the kill: what a client that sent one
// write and waited for its answer saw. Each iteration then restarts the
// killed node with its data dir and waits until all three follow one
// leader and hold the same state again. The survivor asked is the first
// one in name order, so it is the new leader in some iterations and
// forwards the write in others.
//
// The killed node's network namespace stays up, so a survivor that still
// sends to the dead leader gets a refused connection at once, as from a
// machine whose daemon crashed. With -failover-powerloss the dead node is
// also cut off (lab.Partition) until it restarts: packets to it vanish, as
// to a machine that lost power, and whatever still dials it waits for its
// timeout. It reports the median and p90 as "failover-ms" and the worst
// as "failover-max-ms".
func BenchmarkClusterFailover(b *testing.B) {
	testutil.RequireRoot(b)
	lc := newLabCluster(b, false)
	lc.threeVoters()
	all := lc.names

	logLoad(b, "before")
	defer logLoad(b, "after")
	var took []time.Duration
	i := 0
	for b.Loop() {
		// A settled cluster: one leader, every replica up to date.
		old := lc.formed(all, all, formTimeout)
		survivor := others(all, old)[0]
		c := lc.nodes[survivor].c
		if err := lc.lab.Kill9(old); err != nil {
			b.Fatal(err)
		}
		if *powerLoss {
			if err := lc.lab.Partition([]string{old}, others(all, old)); err != nil {
				b.Fatal(err)
			}
		}
		killed := time.Now()
		value := fmt.Sprint(i)
		t, first, err := firstAccepted(killed, 15*time.Second, 10*time.Millisecond, func(ctx context.Context) error {
			return c.Label(ctx, survivor, api.LabelRequest{Set: map[string]string{"failover": value}})
		})
		if err != nil {
			b.Fatalf("no write accepted by %s 15s after the kill of %s: %v", survivor, old, err)
		}
		took = append(took, t)
		st, err := status(c)
		if err != nil || st.Leader == old || st.Leader == "" {
			b.Fatalf("after the kill of %s, %s reports leader %q (%v)", old, survivor, st.Leader, err)
		}
		b.Logf("iteration %d: killed %s, %s accepted a write after %.1f ms; new leader %s; the write sent at the kill: %s", i, old, survivor, ms(t), st.Leader, first)
		if *powerLoss {
			if err := lc.lab.Heal(); err != nil {
				b.Fatal(err)
			}
		}
		if err := lc.lab.Restart(old); err != nil {
			b.Fatal(err)
		}
		i++
	}
	reportDurations(b, "failover", took)
	b.ReportMetric(ms(slices.Max(took)), "failover-max-ms")
}

// firstAccepted calls write every interval from start on, each call in a
// goroutine of its own with a context that ends at start+within, until
// one succeeds. It returns the time from start to the end of the first
// successful call and what became of the call made at start, which is
// waited for (until start+within); the others still running are
// cancelled and waited for.
func firstAccepted(start time.Time, within, interval time.Duration, write func(context.Context) error) (time.Duration, string, error) {
	type result struct {
		n        int
		ran, end time.Duration // the call's own time; from start to its end
		err      error
	}
	deadline, stop := context.WithDeadline(context.Background(), start.Add(within))
	defer stop()
	ctx, cancel := context.WithCancel(deadline)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before the Wait: the calls still running end
	results := make(chan result)
	call := func(ctx context.Context, n int) {
		wg.Go(func() {
			began := time.Now()
			err := write(ctx)
			now := time.Now()
			select {
			case results <- result{n, now.Sub(began), now.Sub(start), err}:
			case <-ctx.Done():
			}
		})
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var first string
	var accepted time.Duration
	var last error
	call(deadline, 0) // not cancelled by another's success
	for n := 1; first == "" || accepted == 0; {
		select {
		case r := <-results:
			if r.n == 0 {
				first = fmt.Sprintf("accepted after %.1f ms", ms(r.ran))
				if r.err != nil {
					first = fmt.Sprintf("failed after %.1f ms: %v", ms(r.ran), r.err)
				}
			}
			if r.err != nil {
				last = r.err
			} else if accepted == 0 {
				accepted = r.end
				cancel()
			}
		case <-tick.C:
			if accepted == 0 {
				call(ctx, n)
				n++
			}
		case <-deadline.Done():
			if accepted > 0 {
				return accepted, "still waiting " + within.String() + " after the kill", nil
			}
			return 0, first, fmt.Errorf("%w; last error: %v", deadline.Err(), last)
		}
	}
	return accepted, first, nil
}

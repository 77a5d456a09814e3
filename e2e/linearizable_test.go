package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// The history checked here is of registers: the label keys k0..k2 of node
// regNode, each write a value no other write uses, each read a
// `nodes --consistent`. Every acknowledged write must be seen by every read
// that starts after it returns, across kills of the leader.
const (
	regNode = "a"
	regKeys = 3

	linClients  = 4
	linDuration = 12 * time.Second
	// linCallTimeout bounds one CLI call: the daemon gives up on a write or
	// a read index after 5 s, so this only cuts a call that hangs.
	linCallTimeout = 10 * time.Second
	killEvery      = 2 * time.Second // pause between a restart and the next kill
	killFor        = time.Second     // how long the killed leader stays down
)

// regInput is one call on a register: a write of value, or a read.
type regInput struct {
	write bool
	key   string
	value string
}

// regOutput is what a read returned ("" for a key never written); writes
// return nothing.
type regOutput struct{ value string }

// opMeta says where an operation ran, for the visualization.
type opMeta struct {
	node string
	err  string // a write whose outcome is unknown: why
}

// registerModel is a map of registers, checked one key at a time: a write
// sets the value, a read returns the current one.
var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(regInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range slices.Sorted(maps.Keys(byKey)) {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(regOutput).value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.write {
			return fmt.Sprintf("put(%s, %q)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %q", in.key, output.(regOutput).value)
	},
	DescribeState:             func(state any) string { return fmt.Sprintf("%q", state) },
	DescribeOperationMetadata: func(m any) string { return fmt.Sprintf("%+v", m) },
}

// linHistory collects operations from the clients. Times are nanoseconds
// since start on the monotonic clock.
type linHistory struct {
	start time.Time

	mu        sync.Mutex // guards following
	ops       []porcupine.Operation
	ambiguous []porcupine.Operation // failed writes: applied or not, nobody knows
	okWrites  int
	okReads   int
	errs      map[string]int // failed calls by kind, for the log
}

func (h *linHistory) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *linHistory) write(client int, node, key, value string, call, ret int64, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	op := porcupine.Operation{ClientId: client, Input: regInput{write: true, key: key, value: value},
		Output: regOutput{}, Call: call, Return: ret, Metadata: opMeta{node: node}}
	if err != nil {
		op.Metadata = opMeta{node: node, err: err.Error()}
		h.ambiguous = append(h.ambiguous, op)
		h.errs["write: "+errKind(err)]++
		return
	}
	h.okWrites++
	h.ops = append(h.ops, op)
}

// read records one `nodes --consistent` as a read of every key, each
// linearized somewhere in the same interval: a weaker claim than one
// atomic read of all keys, so still a sound check.
func (h *linHistory) read(client int, node string, values map[string]string, call, ret int64, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		// A failed read changed nothing: it is not part of the history.
		h.errs["read: "+errKind(err)]++
		return
	}
	h.okReads++
	for i := range regKeys {
		k := regKey(i)
		h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: regInput{key: k},
			Output: regOutput{value: values[k]}, Call: call, Return: ret, Metadata: opMeta{node: node}})
	}
}

// history is the history to check. A write whose outcome is unknown may
// take effect at any time after its call, so it returns after everything
// else, under a client of its own (its client went on without it). One
// that no read saw is left out: values are unique, so it could as well
// take effect last, where it changes no read, and the history is
// linearizable with it if and only if it is without it. Without this every
// failed write stays pending to the end and the check is exponential in
// their number. seen is the failed writes that a read saw applied.
func (h *linHistory) history(clients int) (ops, seen []porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var end int64
	read := map[regInput]bool{} // a write's input, for every value read
	for _, op := range h.ops {
		end = max(end, op.Return)
		if in := op.Input.(regInput); !in.write {
			read[regInput{write: true, key: in.key, value: op.Output.(regOutput).value}] = true
		}
	}
	ops = slices.Clone(h.ops)
	for _, op := range h.ambiguous {
		if !read[op.Input.(regInput)] {
			continue
		}
		op.ClientId = clients + len(seen)
		op.Return = end + 1
		ops = append(ops, op)
		seen = append(seen, op)
	}
	return ops, seen
}

// errKind shortens a CLI error to its cause, to count failures by kind.
func errKind(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "shoal: "); i >= 0 {
		s = s[i+len("shoal: "):]
	}
	s = strings.ReplaceAll(s, api.ErrNoLeader.Error(), "no leader")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

func regKey(i int) string { return fmt.Sprintf("k%d", i) }

// linCLI is fleet.cli with a shorter bound, so that the test's wall time
// does not depend on a hung call.
func linCLI(f *fleet, node string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), linCallTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, append([]string{"--data-dir", f.dirs[node]}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("shoal %s on %s: %v: %s", strings.Join(args, " "), node, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// readRegisters is a linearizable read of node regNode's labels.
func readRegisters(f *fleet, via string) (map[string]string, error) {
	out, err := linCLI(f, via, "nodes", "-o", "json", "--consistent")
	if err != nil {
		return nil, err
	}
	var ns []fleetNode
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		return nil, fmt.Errorf("nodes on %s: %w: %s", via, err, out)
	}
	for _, n := range ns {
		if n.Name == regNode {
			return n.Labels, nil
		}
	}
	return nil, fmt.Errorf("nodes on %s: no node %s: %s", via, regNode, out)
}

// running is the fleet's nodes whose daemon is up.
func (f *fleet) running() []string {
	var up []string
	for _, n := range slices.Sorted(maps.Keys(f.dirs)) {
		if f.lab.Running(n) {
			up = append(up, n)
		}
	}
	return up
}

// linClient writes and reads random registers through random live nodes
// until the deadline.
func linClient(f *fleet, h *linHistory, id int, rng *rand.Rand, seq *atomicSeq, deadline time.Time) {
	for time.Now().Before(deadline) {
		up := f.running()
		if len(up) == 0 {
			time.Sleep(50 * time.Millisecond) // pace: the nemesis restarts one soon
			continue
		}
		node := up[rng.IntN(len(up))]
		if rng.IntN(2) == 0 {
			key, value := regKey(rng.IntN(regKeys)), fmt.Sprintf("w%d", seq.next())
			call := h.now()
			_, err := linCLI(f, node, "label", regNode, key+"="+value)
			h.write(id, node, key, value, call, h.now(), err)
			backOff(err)
			continue
		}
		call := h.now()
		values, err := readRegisters(f, node)
		h.read(id, node, values, call, h.now(), err)
		backOff(err)
	}
}

// backOff paces a client after a failed call: without a leader, calls fail
// at once, and hundreds of them tell no more than a few.
func backOff(err error) {
	if err != nil {
		time.Sleep(100 * time.Millisecond)
	}
}

// atomicSeq numbers the writes so that every value is unique.
type atomicSeq struct {
	mu sync.Mutex // guards n
	n  int
}

func (s *atomicSeq) next() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return s.n
}

// liveLeader asks the running nodes who leads, and wants a leader that is
// up.
func (f *fleet) liveLeader() (string, error) {
	for _, n := range f.running() {
		st, err := f.status(n)
		if err != nil || st.Leader == "" {
			continue
		}
		if !f.lab.Running(st.Leader) {
			return "", fmt.Errorf("%s still names %s, which is down, as leader", n, st.Leader)
		}
		return st.Leader, nil
	}
	return "", fmt.Errorf("no running node names a leader")
}

// nemesis kills the leader with SIGKILL, restarts it a moment later and
// waits for it to see a leader again before the next kill, so that a
// majority is up most of the time. It returns the annotations for the
// visualization, one per kill.
func nemesis(t *testing.T, f *fleet, h *linHistory, deadline time.Time) []porcupine.Annotation {
	var kills []porcupine.Annotation
	for {
		time.Sleep(killEvery) // pace
		if time.Now().After(deadline) {
			return kills
		}
		var victim string
		if err := testutil.Poll(5*time.Second, func() (err error) {
			victim, err = f.liveLeader()
			return err
		}); err != nil {
			t.Errorf("nemesis: %v", err)
			return kills
		}
		at := h.now()
		if err := f.lab.Kill9(victim); err != nil {
			t.Errorf("nemesis: %v", err)
			return kills
		}
		time.Sleep(killFor) // pace: the node stays down this long
		if err := f.lab.Restart(victim); err != nil {
			t.Errorf("nemesis: %v", err)
			return kills
		}
		kills = append(kills, porcupine.Annotation{Tag: "nemesis", Start: at, End: h.now(),
			Description: "kill -9 " + victim, Details: fmt.Sprintf("leader %s killed, then restarted", victim),
			BackgroundColor: "#f4cccc"})
		// The restarted node must follow a leader again before the next
		// kill, or that kill would leave no majority.
		exited := false
		if err := testutil.Poll(20*time.Second, func() error {
			if exited = !f.lab.Running(victim); exited {
				return nil
			}
			st, err := f.status(victim)
			if err != nil {
				return err
			}
			if st.Leader == "" {
				return fmt.Errorf("%s sees no leader yet", victim)
			}
			return nil
		}); err != nil || exited {
			t.Errorf("nemesis: %s after its restart: exited %v, %v (its log is below)", victim, exited, err)
			return kills
		}
	}
}

// Concurrent clients write and read registers through random nodes while
// the leader is killed with SIGKILL again and again; the history, with
// every failed write taken as maybe applied, must be linearizable: no
// acknowledged write is lost, no read sees the past or a write that never
// was.
func TestLinearizableUnderLeaderKills(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	f.bootstrap(regNode)
	f.join("b")
	f.join("c")
	all := []string{regNode, "b", "c"}
	f.waitFormed(regNode, all, all, 30*time.Second)

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	h := &linHistory{start: time.Now(), errs: map[string]int{}}
	deadline := time.Now().Add(linDuration)
	seq := &atomicSeq{}
	var wg sync.WaitGroup
	for i := range linClients {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		wg.Go(func() { linClient(f, h, i, rng, seq, deadline) })
	}
	var kills []porcupine.Annotation
	wg.Go(func() { kills = nemesis(t, f, h, deadline) })
	wg.Wait()

	// Each node back reads every acknowledged write. A node that did not
	// come back has failed the test already; the history is checked all
	// the same.
	for _, n := range f.running() {
		testutil.WaitFor(t, 30*time.Second, func() error {
			call := h.now()
			values, err := readRegisters(f, n)
			h.read(linClients, n, values, call, h.now(), err)
			return err
		})
	}

	ops, seen := h.history(linClients + 1)
	t.Logf("%d operations: %d acknowledged writes, %d failed writes (%d of them seen applied), %d reads; %d leader kills in %v",
		len(ops), h.okWrites, len(h.ambiguous), len(seen), h.okReads, len(kills), time.Since(h.start).Round(time.Millisecond))
	for _, k := range slices.Sorted(maps.Keys(h.errs)) {
		t.Logf("failed %d×: %s", h.errs[k], k)
	}
	for _, op := range seen {
		in, m := op.Input.(regInput), op.Metadata.(opMeta)
		t.Logf("failed write %s=%s through %s at %v was applied: %s", in.key, in.value, m.node, time.Duration(op.Call), m.err)
	}
	// Too small a history proves nothing.
	if h.okWrites < 20 || h.okReads < 20 || len(kills) < 2 {
		t.Fatalf("history too small: %d acknowledged writes, %d reads, %d kills; want 20, 20 and 2",
			h.okWrites, h.okReads, len(kills))
	}

	checked := time.Now()
	res, info := porcupine.CheckOperationsVerbose(registerModel, ops, time.Minute)
	t.Logf("porcupine: %s in %v", res, time.Since(checked).Round(time.Millisecond))
	if res == porcupine.Ok {
		return
	}
	// ArtifactDir is kept with go test -artifacts, removed otherwise.
	info.AddAnnotations(kills)
	path := filepath.Join(t.ArtifactDir(), "linearizability.html")
	if err := porcupine.VisualizePath(registerModel, info, path); err != nil {
		t.Errorf("visualize: %v", err)
	}
	what := "not linearizable"
	if res == porcupine.Unknown {
		what = "not checked: porcupine timed out"
	}
	t.Fatalf("the history is %s; visualization (kept with -artifacts): %s", what, path)
}

// The model tells lost and invented writes from legal histories, so that
// the test above cannot pass on a checker that accepts everything.
func TestRegisterModel(t *testing.T) {
	t.Parallel()
	w := func(key, value string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: regInput{write: true, key: key, value: value}, Output: regOutput{}, Call: call, Return: ret}
	}
	r := func(key, value string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: 1, Input: regInput{key: key}, Output: regOutput{value: value}, Call: call, Return: ret}
	}
	cases := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"sequential", []porcupine.Operation{w("k0", "w1", 0, 1), r("k0", "w1", 2, 3), r("k1", "", 2, 3)}, porcupine.Ok},
		{"concurrent read sees either", []porcupine.Operation{w("k0", "w1", 0, 1), w("k0", "w2", 2, 5), r("k0", "w1", 3, 4)}, porcupine.Ok},
		{"lost write", []porcupine.Operation{w("k0", "w1", 0, 1), r("k0", "", 2, 3)}, porcupine.Illegal},
		{"stale read", []porcupine.Operation{w("k0", "w1", 0, 1), w("k0", "w2", 2, 3), r("k0", "w1", 4, 5)}, porcupine.Illegal},
		{"invented value", []porcupine.Operation{w("k0", "w1", 0, 1), r("k0", "w9", 2, 3)}, porcupine.Illegal},
		{"value of another key", []porcupine.Operation{w("k0", "w1", 0, 1), r("k1", "w1", 2, 3)}, porcupine.Illegal},
		{"unknown write seen late", []porcupine.Operation{w("k0", "w1", 0, 1), w("k0", "w2", 2, 100), r("k0", "w1", 3, 4), r("k0", "w2", 5, 6)}, porcupine.Ok},
		{"unknown write seen, then not", []porcupine.Operation{w("k0", "w1", 0, 1), w("k0", "w2", 2, 100), r("k0", "w2", 3, 4), r("k0", "w1", 5, 6)}, porcupine.Illegal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := porcupine.CheckOperationsTimeout(registerModel, c.ops, 10*time.Second); got != c.want {
				t.Errorf("%s, want %s", got, c.want)
			}
		})
	}
}

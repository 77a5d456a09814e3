package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// roleRecorder stands in for voterCerts: it records the role asked for.
type roleRecorder struct {
	mu    sync.Mutex
	voter *bool
}

func (r *roleRecorder) settleVoterCert(voter bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.voter = &voter
	return nil
}

func (r *roleRecorder) role() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.voter == nil:
		return "none asked"
	case *r.voter:
		return "voter"
	}
	return "plain"
}

// sharedState is the replicated state of a test's nodes: who is revoked.
type sharedState struct {
	fakeTrustState
	changed chan struct{} // never closed: the loop goes by its tick
}

func (s *sharedState) Changed() <-chan struct{} { return s.changed }

func (s *sharedState) revoke(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked[id] = true
}

type callerKey struct{}

// caKeyCaller makes node calls for node from in process: the serving
// side finds the caller in the request's context (callerOf).
type caKeyCaller struct {
	from  pki.NodeIdentity
	nodes map[raft.ServerAddress]*caKeys
}

func (c *caKeyCaller) nodeRequest(ctx context.Context, method string, addr raft.ServerAddress, path string, body io.Reader) (*http.Response, error) {
	k, ok := c.nodes[addr]
	if !ok || path != "/v1/ca-key" {
		return nil, &dialError{fmt.Errorf("no node serves %s%s", addr, path)}
	}
	rec := httptest.NewRecorder()
	r := httptest.NewRequestWithContext(context.WithValue(ctx, callerKey{}, c.from), method, "https://node"+path, body)
	k.serveCAKey(rec, r)
	return rec.Result(), nil
}

// callerOf is trust.peerOf for caKeyCaller's calls.
type callerOf struct{ state *sharedState }

func (c callerOf) peerOf(r *http.Request) *pki.NodeIdentity {
	p, ok := r.Context().Value(callerKey{}).(pki.NodeIdentity)
	if !ok || c.state.Revoked(p.ID) {
		return nil
	}
	return &p
}

// The CA key part alone, on two real Rafts over loopback and real keys
// on disk: a node made voter fetches the key from the leader and asks
// for its voter certificate; only voters of the holder's configuration
// get the key; demoted, the node asks for a plain certificate and deletes
// its copy once the leader shows it holds one; revoked, it deletes it.
func TestCAKeysAlone(t *testing.T) {
	ca, err := pki.NewCA("c")
	if err != nil {
		t.Fatal(err)
	}
	keeper := func(withKey bool) (*caKeeper, string) {
		dir := t.TempDir()
		if err := os.Mkdir(tlsDir(dir), 0o700); err != nil {
			t.Fatal(err)
		}
		k, err := newCAKeeper(dir, ca.Cert)
		if err != nil {
			t.Fatal(err)
		}
		if withKey {
			if err := k.put(ca.KeyPEM()); err != nil {
				t.Fatal(err)
			}
		}
		return k, filepath.Join(tlsDir(dir), caKeyFile)
	}
	keysA, _ := keeper(true)
	keysB, pathB := keeper(false)
	ra, rb := startRaftOnStream(t, "a"), startRaftOnStream(t, "b")
	state := &sharedState{fakeTrustState: fakeTrustState{revoked: map[string]bool{}}, changed: make(chan struct{})}
	nodes := map[raft.ServerAddress]*caKeys{}
	caller := func(name string) *caKeyCaller {
		return &caKeyCaller{from: pki.NodeIdentity{Name: name, ID: name}, nodes: nodes}
	}
	certsB := &roleRecorder{}
	a := newCAKeys(identity{Name: "a", ID: "a"}, keysA, fixedRaft{ra.r}, state, &roleRecorder{}, caller("a"), callerOf{state}, testutil.Logger(t))
	b := newCAKeys(identity{Name: "b", ID: "b"}, keysB, fixedRaft{rb.r}, state, certsB, caller("b"), callerOf{state}, testutil.Logger(t))
	nodes[ra.trans.LocalAddr()], nodes[rb.trans.LocalAddr()] = a, b
	ctx := context.Background()

	testutil.WaitFor(t, 10*time.Second, func() error {
		if ra.r.State() != raft.Leader {
			return fmt.Errorf("a is %s", ra.r.State())
		}
		return nil
	})
	if _, err := b.askCAKey(ctx, rb.trans.LocalAddr()); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("asked a node without the key: %v, want api.ErrNotFound", err)
	}
	if err := ra.r.AddNonvoter("b", rb.trans.LocalAddr(), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if ans, err := b.askCAKey(ctx, ra.trans.LocalAddr()); err != nil || !strings.Contains(ans.Refused, "node b is not a voter") || ans.Key != nil {
		t.Errorf("a non-voter asked: refused %q, key given %v, %v", ans.Refused, ans.Key != nil, err)
	}
	if ans, err := nodeGet[caKeyAnswer](ctx, caller("stranger"), ra.trans.LocalAddr(), "/v1/ca-key"); err != nil || !strings.Contains(ans.Refused, "node stranger is not a voter") || ans.Key != nil {
		t.Errorf("a node outside the configuration asked: refused %q, key given %v, %v", ans.Refused, ans.Key != nil, err)
	}

	loop, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.keepCAKey(loop) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("keepCAKey: %v", err)
		}
	})

	if err := ra.r.AddVoter("b", rb.trans.LocalAddr(), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if keysB.get() == nil || certsB.role() != "voter" {
			return fmt.Errorf("b: key %v, certificate %s", keysB.get() != nil, certsB.role())
		}
		return nil
	})
	if data, err := os.ReadFile(pathB); err != nil || string(data) != string(ca.KeyPEM()) {
		t.Fatalf("b's copy on disk: %v", err)
	}

	if err := ra.r.DemoteVoter("b", 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if keysB.get() != nil || certsB.role() != "plain" {
			return fmt.Errorf("b demoted: key %v, certificate %s", keysB.get() != nil, certsB.role())
		}
		return nil
	})
	if _, err := os.Stat(pathB); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("b's copy on disk after its demotion: %v", err)
	}
	if keysA.get() == nil {
		t.Fatal("the leader lost its copy")
	}

	// Revoked, a voter is given nothing and deletes the copy it holds.
	if err := ra.r.AddVoter("b", rb.trans.LocalAddr(), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if keysB.get() == nil {
			return errors.New("b, a voter again, has no key")
		}
		return nil
	})
	state.revoke("b")
	if ans, err := b.askCAKey(ctx, ra.trans.LocalAddr()); err != nil || ans.Refused == "" || ans.Key != nil {
		t.Errorf("a revoked voter asked: refused %q, key given %v, %v", ans.Refused, ans.Key != nil, err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if keysB.get() != nil {
			return errors.New("b, revoked, still holds the key")
		}
		return nil
	})
}

package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/store"
)

// A voter and a non-voter on loopback: the non-voter is an untrusted
// device. Its node certificate, stolen with the device, is no admin of the
// fleet: the voter's API refuses it, and on the node protocol it may only
// do its own job. Its own socket refuses cluster writes and says how to
// make them: with the admin credential, with which they go to a voter.
func TestNonVoterIsNoAdmin(t *testing.T) {
	t.Parallel()
	a, b := voterAndNonVoter(t, "trust")
	aPort := portOf(t, a)
	aID := nodeID(t, a.dataDir)

	// The attack: b's certificate and key as a client of a's API.
	api := stolenClient(t, b.dataDir, "shoal-api/1")
	app := `[{"name":"evil","image":"registry.invalid/evil:1","volumes":["/:/host"]}]`
	execReq := url.QueryEscape(`{"app":"evil","index":0,"command":["cat","/host/etc/shadow"]}`)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/nodes/trust-a/labels", `{"set":{"pwned":"yes"}}`},
		{"POST", "/v1/apps", app},
		{"POST", "/v1/exec?req=" + execReq, ""},
		{"GET", "/v1/logs/evil/0", ""},
	} {
		code, body := call(t, api, c.method, aPort, c.path, c.body)
		if code != http.StatusForbidden || !strings.Contains(body, "not a voter") || !strings.Contains(body, "admin credential") {
			t.Errorf("%s %s with a non-voter's certificate on a voter's API: %d %s, want 403 saying it is not a voter", c.method, c.path, code, body)
		}
	}

	refusedAfterRequest(t, b.dataDir, aPort)

	// The same certificate on the node protocol: only its own job.
	node := stolenClient(t, b.dataDir, "shoal-node/1")
	write, err := store.Encode(store.SetLabels{Node: "trust-a", Set: map[string]string{"pwned": "yes"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, path, body string }{
		{"a forwarded write", "/v1/apply", string(write)},
		{"forget of another node", "/v1/forget", `{"name":"trust-a"}`},
		{"leave of another node", "/v1/leave", fmt.Sprintf(`{"id":%q,"name":"trust-a"}`, aID)},
		{"a report of another node's instances", "/v1/report", `{"node":"trust-a","instances":[]}`},
		{"its own report naming another node's instance", "/v1/report",
			`{"node":"trust-b","instances":[{"app":"web","instance":"web.0","node":"trust-a","state":"running"}]}`},
	} {
		if code, body := call(t, node, "POST", aPort, c.path, c.body); code != http.StatusForbidden {
			t.Errorf("%s from a non-voter: %d %s, want 403", c.what, code, body)
		}
	}
	// Its own job it may do.
	if code, body := call(t, node, "POST", aPort, "/v1/report", `{"node":"trust-b","instances":[]}`); code != http.StatusNoContent {
		t.Errorf("b's report of its own instances: %d %s", code, body)
	}
	if code, body := call(t, node, "GET", aPort, "/v1/read-index", ""); code != http.StatusOK || !strings.Contains(body, "index") {
		t.Errorf("b's read index: %d %s", code, body)
	}

	// b's own socket: cluster writes are refused, naming the credential.
	spec := b.writeFile("app.yaml", "name: web\nimage: registry.invalid/web:1\n")
	for _, args := range [][]string{{"label", "trust-a", "x=y"}, {"apply", "-f", spec}} {
		out, errOut, code := b.shoal(args...)
		if code == 0 || !strings.Contains(errOut, "admin credential") || !strings.Contains(errOut, "non-voter") {
			t.Errorf("shoal %s on the non-voter's socket: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	ns := nodeLabels(t, a)
	if len(ns["trust-a"]) != 0 || len(ns["trust-b"]) != 0 {
		t.Errorf("labels after the refused writes: %v", ns)
	}
	if ps := a.ps(); len(ps) != 0 {
		t.Errorf("instances after the refused writes: %+v", ps)
	}

	// With the admin credential the CLI takes them to the voter.
	cred := "SHOAL_CREDENTIAL=" + filepath.Join(a.dataDir, "tls", "admin.credential")
	for _, args := range [][]string{{"label", "trust-a", "x=y"}, {"apply", "-f", spec}} {
		if out, errOut, code := b.shoalEnv([]string{cred}, args...); code != 0 {
			t.Errorf("shoal %s on the non-voter's socket with the credential: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	if got := nodeLabels(t, a)["trust-a"]["x"]; got != "y" {
		t.Errorf("label x on trust-a after the credential's write: %q", got)
	}
	// The leader's scheduler places the app a moment after the write.
	testutil.WaitFor(t, 10*time.Second, func() error {
		if ps := a.ps(); len(ps) != 1 || ps[0].App != "web" {
			return fmt.Errorf("instances after the credential's apply: %+v", ps)
		}
		return nil
	})
	a.must("rm", "web")

	// Leaving under its own id with another node's name would delete that
	// node's record (its labels with it).
	bID := nodeID(t, b.dataDir)
	if code, body := call(t, node, "POST", aPort, "/v1/leave", fmt.Sprintf(`{"id":%q,"name":"trust-a"}`, bID)); code != http.StatusForbidden {
		t.Errorf("leave of b under a's name: %d %s, want 403", code, body)
	}
	if got := nodeLabels(t, a)["trust-a"]["x"]; got != "y" {
		t.Errorf("label x on trust-a after b's leave under its name: %q", got)
	}

	// Leaving is its own job: it may.
	if out := b.must("leave"); !strings.Contains(out, "left the cluster") {
		t.Errorf("leave on the non-voter said: %s", out)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		if _, ok := nodeLabels(t, a)["trust-b"]; ok {
			return fmt.Errorf("trust-b is still listed")
		}
		return nil
	})
	// Revoked now: its connection opened before (kept alive by the
	// client) serves it no more than a new one would.
	if code, body := call(t, node, "POST", aPort, "/v1/report", `{"node":"trust-b","instances":[]}`); code != http.StatusForbidden {
		t.Errorf("b's report after it left, on its old connection: %d %s, want 403", code, body)
	}
}

// refusedAfterRequest checks that a refused peer gets its answer after its
// request, not before: an HTTP client that receives bytes while it has no
// request out drops the connection, and reports "readLoopPeekFailLocked"
// instead of the refusal.
func refusedAfterRequest(t *testing.T, dataDir string, port int) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dataDir, "tls", "node.crt"), filepath.Join(dataDir, "tls", "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{Certificates: []tls.Certificate{cert},
		NextProtos: []string{"shoal-api/1"}, MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(buf); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a refused peer got %q (%v) before it sent a request", buf[:n], err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /v1/nodes HTTP/1.1\r\nHost: x\r\n\r\n")
	got, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(got), "HTTP/1.1 403") || !strings.Contains(string(got), "not a voter") {
		t.Errorf("a refused peer's answer: %q", got)
	}
}

// stolenClient is an HTTP client that presents node dataDir's certificate
// with ALPN proto, as a thief of the device would.
func stolenClient(t *testing.T, dataDir, proto string) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dataDir, "tls", "node.crt"), filepath.Join(dataDir, "tls", "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{proto}, MinVersion: tls.VersionTLS13,
		InsecureSkipVerify: true} // the thief does not care whom it reaches
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: false}, Timeout: 10 * time.Second}
}

// call sends one request to the cluster port at 127.0.0.1:port.
func call(t *testing.T, c *http.Client, method string, port int, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, fmt.Sprintf("https://127.0.0.1:%d%s", port, path), bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(data)
}

// portOf is the cluster port a harness node listens on.
func portOf(t *testing.T, n *node) int {
	t.Helper()
	for i, a := range n.args {
		if a == "--port" && i+1 < len(n.args) {
			var p int
			fmt.Sscan(n.args[i+1], &p)
			return p
		}
	}
	t.Fatal("no --port")
	return 0
}

func nodeID(t *testing.T, dataDir string) string {
	t.Helper()
	var id struct{ ID string }
	b, err := os.ReadFile(filepath.Join(dataDir, "node.json"))
	if err != nil || json.Unmarshal(b, &id) != nil {
		t.Fatalf("node.json of %s: %v", dataDir, err)
	}
	return id.ID
}

// nodeLabels is every node's labels as n sees them.
func nodeLabels(t *testing.T, n *node) map[string]map[string]string {
	t.Helper()
	var ns []fleetNode
	if err := n.json(&ns, "nodes", "-o", "json"); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, nd := range ns {
		out[nd.Name] = nd.Labels
	}
	return out
}

// voterAndNonVoter starts PREFIX-a, the one voter, and PREFIX-b, which
// joins it from a token file as a non-voter, and waits until b says so.
func voterAndNonVoter(t *testing.T, prefix string) (a, b *node) {
	t.Helper()
	a = newNode(t, prefix+"-a")
	a.args = append(a.args, "--voters", "1")
	a.start()
	token, err := tokenOf(a.must("token"))
	if err != nil {
		t.Fatal(err)
	}
	b = newNode(t, prefix+"-b")
	b.args = append(b.args, "--join-file", b.writeFile("token", token), "--voters", "1")
	b.start()
	testutil.WaitFor(t, 30*time.Second, func() error {
		var st clusterStatus
		if err := b.json(&st, "status", "-o", "json"); err != nil {
			return err
		}
		if st.Role != "non-voter" || len(st.Voters) != 1 || st.Voters[0] != prefix+"-a" || st.Leader != prefix+"-a" {
			return fmt.Errorf("%s-b's status: %+v", prefix, st)
		}
		return nil
	})
	return a, b
}

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// Health checks run inside the container's own network namespace: a
// server on the container's loopback is healthy, a check against a port
// nothing listens on makes the instance unhealthy and restarts it.
func TestHealthChecks(t *testing.T) {
	n := newNode(t, "e2e-health")
	n.start()
	n.must("image", "import", testutil.TestProgImage(t, "testprog:1"))
	n.must("apply", "-f", n.writeFile("apps.yaml", `name: good
image: testprog:1
command: ["/app", "-http", "127.0.0.1:8080"]
health: {http: "http://127.0.0.1:8080/healthz", interval: 200ms, timeout: 1s, retries: 2}
---
name: bad
image: testprog:1
command: ["/app", "-sleep", "1h"]
health: {tcp: "127.0.0.1:9", interval: 200ms, timeout: 500ms, retries: 2}
---
name: execgood
image: testprog:1
command: ["/app", "-sleep", "1h"]
health: {exec: ["/app", "-exit", "0"], interval: 200ms, timeout: 2s, retries: 2}
---
name: execbad
image: testprog:1
command: ["/app", "-sleep", "1h"]
health: {exec: ["/app", "-exit", "1"], interval: 200ms, timeout: 2s, retries: 2}
`))
	testutil.WaitFor(t, 30*time.Second, func() error {
		byApp := map[string]instance{}
		for _, i := range n.ps() {
			byApp[i.App] = i
		}
		if g := byApp["good"]; g.State != "running" {
			return fmt.Errorf("good is %s, want running", g.State)
		}
		for _, name := range []string{"bad", "execbad"} {
			if b := byApp[name]; b.Restarts < 1 {
				return fmt.Errorf("%s: state %s, %d restarts; want it restarted for failing its check", name, b.State, b.Restarts)
			}
		}
		if g := byApp["execgood"]; g.State != "running" {
			return fmt.Errorf("execgood is %s, want running", g.State)
		}
		return nil
	})
	// The good one stays up: no restart for a passing check.
	for _, i := range n.ps() {
		if (i.App == "good" || i.App == "execgood") && i.Restarts != 0 {
			t.Fatalf("healthy instance restarted %d times", i.Restarts)
		}
	}
	n.must("rm", "good", "bad", "execgood", "execbad")
}

package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/api"
)

// Writes are judged where they enter, before they reach the log: the FSM
// applies whatever was committed (store.fsm.Apply), so a spec, a count or
// a label this release refuses must never become an entry.
func TestWritesJudgedAtTheEdge(t *testing.T) {
	n, _ := startNode(t, t.TempDir(), "n1")
	ctx := context.Background()
	if _, err := n.apps.Apply(ctx, []api.App{{Name: "web", Image: "127.0.0.1:1/missing:1", Replicas: 2}}); err != nil {
		t.Fatal(err)
	}
	refusals := []struct {
		name  string
		write func() error
		says  string
	}{
		{"an app name the rules refuse", func() error {
			_, err := n.apps.Apply(ctx, []api.App{{Name: "Bad_Name", Image: "x:1"}})
			return err
		}, `app "Bad_Name"`},
		{"a restart policy the rules refuse", func() error {
			_, err := n.apps.Apply(ctx, []api.App{{Name: "web", Image: "127.0.0.1:1/missing:1", Replicas: 2, Restart: "sometimes"}})
			return err
		}, `app "web"`},
		{"update:, which this release does not honour", func() error {
			_, err := n.apps.Apply(ctx, []api.App{{Name: "web", Image: "127.0.0.1:1/missing:1", Replicas: 2, Update: &api.Update{MaxUnavailable: 1}}})
			return err
		}, "update: rolling updates are not supported yet"},
		{"ports with network: host", func() error {
			_, err := n.apps.Apply(ctx, []api.App{{Name: "web", Image: "127.0.0.1:1/missing:1", Replicas: 2, Network: api.NetworkHost, Ports: []string{"8080"}}})
			return err
		}, "ports: not with network: host"},
		{"an app given twice", func() error {
			_, err := n.apps.Apply(ctx, []api.App{{Name: "dup", Image: "x:1"}, {Name: "dup", Image: "y:1"}})
			return err
		}, `app "dup" is given twice`},
		{"a spec past the size bound", func() error {
			_, err := n.apps.Apply(ctx, []api.App{{Name: "big", Image: "x:1", Env: map[string]string{"A": strings.Repeat("x", 300<<10)}}})
			return err
		}, `app "big": its spec is`},
		{"a negative replica count", func() error {
			_, err := n.apps.Scale(ctx, map[string]int{"web": -1})
			return err
		}, "web=-1"},
		{"a label key the rules refuse", func() error {
			return n.fleet.Label(ctx, "n1", api.LabelRequest{Set: map[string]string{"bad key": "x"}})
		}, "bad key"},
		{"a label value that would forge a line of a table", func() error {
			return n.fleet.Label(ctx, "n1", api.LabelRequest{Set: map[string]string{"site": "a\nn9  alive"}})
		}, "control character"},
		{"a backup holding a node label the rules refuse", func() error {
			body := `{"cluster_id":"c","index":1,"taken_at":"2026-01-01T00:00:00Z","apps":[],"nodes":[{"name":"nb","labels":{"k":"line1\nline2"}}]}`
			sum := sha256.Sum256([]byte(body))
			_, err := n.backups.Restore(ctx, strings.NewReader(fmt.Sprintf("shoal-backup 1\nsha256 %x\n%s\n", sum, body)))
			return err
		}, "node nb: label k"},
		{"a backup holding a node name the rules refuse", func() error {
			body := `{"cluster_id":"c","index":1,"taken_at":"2026-01-01T00:00:00Z","apps":[],"nodes":[{"name":"Not_A name"}]}`
			sum := sha256.Sum256([]byte(body))
			_, err := n.backups.Restore(ctx, strings.NewReader(fmt.Sprintf("shoal-backup 1\nsha256 %x\n%s\n", sum, body)))
			return err
		}, "not a node name"},
		{"a backup holding an app the rules refuse", func() error {
			body := `{"cluster_id":"c","index":1,"taken_at":"2026-01-01T00:00:00Z","apps":[{"name":"Bad_Name","image":"x:1"}],"nodes":[]}`
			sum := sha256.Sum256([]byte(body))
			_, err := n.backups.Restore(ctx, strings.NewReader(fmt.Sprintf("shoal-backup 1\nsha256 %x\n%s\n", sum, body)))
			return err
		}, `app "Bad_Name"`},
	}
	for _, r := range refusals {
		err := r.write()
		if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), r.says) {
			t.Errorf("%s: %v; want ErrInvalid naming %q", r.name, err, r.says)
		}
	}
	apps, err := n.store.Apps()
	if err != nil || len(apps) != 1 || apps[0].Name != "web" || apps[0].Replicas != 2 || apps[0].Restart != api.RestartAlways {
		t.Fatalf("a refused write reached the state: %+v, %v", apps, err)
	}
	recs, _ := n.store.Nodes()
	for _, r := range recs {
		if _, ok := r.Labels["bad key"]; ok {
			t.Fatalf("a refused label reached the state: %+v", r)
		}
	}
}

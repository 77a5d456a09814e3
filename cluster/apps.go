package cluster

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/apiserver"
	"github.com/shoal-edge/shoal/store"
)

// appBackend answers `shoal apply`, `rm` and `scale` (apiserver.Apps): it
// judges specs at the API's edge, commits them through Raft, and tells at
// once which apps no node can take.
type appBackend struct {
	writes   commandWriter
	apps     appReader
	unplaced unplacedWarner
}

// unplacedWarner fills each result of a write with why its app cannot be
// placed now (unplaced).
type unplacedWarner interface {
	warnUnplaced(res []api.ApplyResult, apps []api.App)
}

var (
	_ apiserver.Apps = (*appBackend)(nil)
	_ unplacedWarner = (*unplaced)(nil)
)

func newAppBackend(writes commandWriter, apps appReader, unplaced unplacedWarner) *appBackend {
	return &appBackend{writes: writes, apps: apps, unplaced: unplaced}
}

// Apply creates or updates apps.
func (b *appBackend) Apply(ctx context.Context, apps []api.App) ([]api.ApplyResult, error) {
	seen := map[string]bool{}
	for i := range apps {
		if seen[apps[i].Name] {
			return nil, fmt.Errorf("%w: app %q is given twice", api.ErrInvalid, apps[i].Name)
		}
		seen[apps[i].Name] = true
		// Every node keeps every spec, and every version an instance
		// still runs: a spec is small, or it is a mistake.
		if b, err := json.Marshal(apps[i]); err != nil || len(b) > maxAppSpec {
			return nil, fmt.Errorf("%w: app %q: its spec is %d bytes encoded, at most %d", api.ErrInvalid, apps[i].Name, len(b), maxAppSpec)
		}
		apps[i].Defaults()
		if err := apps[i].Validate(); err != nil {
			return nil, fmt.Errorf("%w: app %q: %v", api.ErrInvalid, apps[i].Name, err)
		}
		if err := apps[i].CheckSupported(); err != nil {
			return nil, fmt.Errorf("%w: app %q: %v", api.ErrInvalid, apps[i].Name, err)
		}
	}
	var res []api.ApplyResult
	if err := b.writes.write(ctx, store.PutApps{Apps: apps}, &res); err != nil {
		return nil, err
	}
	b.unplaced.warnUnplaced(res, apps)
	return res, nil
}

// maxAppSpec bounds one app's spec, encoded.
const maxAppSpec = 256 << 10

// Delete removes apps; their containers stop on every node.
func (b *appBackend) Delete(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: no app named", api.ErrInvalid)
	}
	return b.writes.write(ctx, store.DeleteApps{Names: names}, nil)
}

// Scale sets the replica counts of replicated apps, all or none.
func (b *appBackend) Scale(ctx context.Context, replicas map[string]int) ([]api.ApplyResult, error) {
	if len(replicas) == 0 {
		return nil, fmt.Errorf("%w: no app to scale", api.ErrInvalid)
	}
	for app, r := range replicas {
		if r < 0 {
			return nil, fmt.Errorf("%w: %s=%d: replicas cannot be negative", api.ErrInvalid, app, r)
		}
	}
	var res []api.ApplyResult
	if err := b.writes.write(ctx, store.Scale{Replicas: replicas}, &res); err != nil {
		return nil, err
	}
	var apps []api.App
	for _, r := range res {
		// This replica may not hold the write yet: the spec is, with the
		// count just set.
		if a, err := b.apps.App(r.Name); err == nil {
			a.Replicas = replicas[r.Name]
			apps = append(apps, a)
		}
	}
	b.unplaced.warnUnplaced(res, apps)
	return res, nil
}

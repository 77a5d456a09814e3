package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/internal/testutil"
	"github.com/shoal-edge/shoal/runtime/image"
)

// placement is desired state held in memory: allocations and the specs
// they run.
type placement struct {
	allocs []api.Allocation
	specs  map[string]api.App // by app name, any version
}

func (p *placement) Allocations() ([]api.Allocation, error) { return p.allocs, nil }

func (p *placement) Spec(app string, _ uint64) (api.App, error) {
	s, ok := p.specs[app]
	if !ok {
		return api.App{}, fmt.Errorf("app %s: %w", app, api.ErrNotFound)
	}
	return s, nil
}

// The image backend alone, over a real image store: an image an app placed
// on this node uses is not removed, naming the app; one used only by an app
// placed elsewhere is; a missing one is not found, and a removal with a
// missing ref removes nothing.
func TestImageBackendKeepsImagesInUse(t *testing.T) {
	store, err := image.New(image.Config{Root: t.TempDir(), Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	archive := testutil.TestProgImage(t, "example.com/web:1")
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	placed := &placement{
		allocs: []api.Allocation{{App: "web", Index: 0, Version: 3, Node: "edge-1"}},
		specs:  map[string]api.App{"web": {Name: "web", Image: "example.com/web:1"}},
	}
	b := newImageBackend("edge-1", store, placed)
	ctx := context.Background()
	imgs, err := b.ImportImage(ctx, f)
	if err != nil || len(imgs) != 1 || imgs[0].Ref != "example.com/web:1" {
		t.Fatalf("import = %+v, %v", imgs, err)
	}

	err = b.RemoveImages(ctx, []string{"example.com/web:1"})
	if !errors.Is(err, api.ErrImageUsed) || !strings.Contains(err.Error(), "app web") {
		t.Errorf("remove an image an app here uses: %v", err)
	}
	err = b.RemoveImages(ctx, []string{"example.com/web:1", "example.com/nothing:1"})
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "no image was removed") {
		t.Errorf("remove with a missing ref: %v", err)
	}
	if list, _ := b.ListImages(ctx); len(list) != 1 {
		t.Fatalf("images after refused removals: %+v", list)
	}

	placed.allocs[0].Node = "edge-2" // the instance moved away
	if err := b.RemoveImages(ctx, []string{"example.com/web:1"}); err != nil {
		t.Fatalf("remove an image only another node's app uses: %v", err)
	}
	if list, _ := b.ListImages(ctx); len(list) != 0 {
		t.Errorf("images after removal: %+v", list)
	}
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/runtime/image"
)

// ImportImage loads an image tarball into this node's store.
func (n *Node) ImportImage(ctx context.Context, r io.Reader) ([]api.Image, error) {
	imgs, err := n.images.Import(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v%s", api.ErrInvalid, err, limitHint(err))
	}
	return apiImages(imgs), nil
}

// ListImages lists this node's images.
func (n *Node) ListImages(ctx context.Context) ([]api.Image, error) {
	imgs, err := n.images.List()
	if err != nil {
		return nil, err
	}
	return apiImages(imgs), nil
}

// PullImage pulls from a registry into this node's store.
func (n *Node) PullImage(ctx context.Context, req api.PullRequest, progress func(done, total int64)) (api.Image, error) {
	img, err := n.images.Pull(ctx, req.Ref, image.PullOptions{
		Insecure: req.Insecure,
		Username: req.Username,
		Password: req.Password,
		Progress: progress,
	})
	if err != nil {
		return api.Image{}, fmt.Errorf("%w%s", err, limitHint(err))
	}
	return apiImages([]image.Image{img})[0], nil
}

// limitHint tells the operator which setting an image went over.
func limitHint(err error) string {
	if errors.Is(err, image.ErrTooLarge) {
		return " (set by shoal up --image-max-unpacked)"
	}
	return ""
}

// RemoveImages removes the images refs name, all or none: when one is
// missing or one is used by an app placed on this node, it removes nothing
// and says so for every such ref. An app uses a ref when removing the ref
// would take away the name its image resolves through, or the data of the
// image it runs.
func (n *Node) RemoveImages(ctx context.Context, refs []string) error {
	var errs []error
	for _, ref := range refs {
		if _, err := n.images.Get(ref); err != nil {
			if errors.Is(err, image.ErrNotFound) {
				err = fmt.Errorf("image %s: %w", ref, api.ErrNotFound)
			}
			errs = append(errs, err)
			continue
		}
		users, err := n.imageUsers(ref)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(users) > 0 {
			errs = append(errs, fmt.Errorf("image %s is used by %s on this node: remove or update the app first: %w",
				ref, appList(users), api.ErrImageUsed))
		}
	}
	if len(errs) > 0 {
		if len(refs) > 1 {
			errs = append(errs, errors.New("no image was removed"))
		}
		return errors.Join(errs...)
	}
	for _, ref := range refs {
		err := n.images.RemoveUnlessUsed(ref, n.imageInUse)
		switch {
		case errors.Is(err, image.ErrNotFound):
			return fmt.Errorf("image %s: %w", ref, api.ErrNotFound)
		case errors.Is(err, image.ErrInUse):
			return fmt.Errorf("image %s is used by an app on this node: remove the app first: %w", ref, api.ErrImageUsed)
		case err != nil:
			return err
		}
	}
	return nil
}

// imageUsers names the apps placed on this node whose image removing ref
// would take away: the name the app's image resolves through, or, for a
// digest or image ID, every name of that image. Apps not placed here are not asked: should one be placed
// here later, the node pulls its image as for any new app.
func (n *Node) imageUsers(ref string) ([]string, error) {
	allocs, err := n.store.Allocations()
	if err != nil {
		return nil, fmt.Errorf("image %s: read allocations: %w", ref, err)
	}
	var users []string
	for _, a := range allocs {
		if a.Node != n.id.Name || slices.Contains(users, a.App) {
			continue
		}
		app, err := n.store.Spec(a.App, a.Version)
		if err != nil {
			continue
		}
		hit, err := n.images.RemoveTakes(ref, app.Image)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		if hit {
			users = append(users, a.App)
		}
	}
	slices.Sort(users)
	return users, nil
}

func appList(apps []string) string {
	if len(apps) == 1 {
		return "app " + apps[0]
	}
	return "apps " + strings.Join(apps, ", ")
}

// imageInUse says whether an instance placed on this node runs id.
func (n *Node) imageInUse(id string) bool {
	allocs, err := n.store.Allocations()
	if err != nil {
		return true // when in doubt, keep the image
	}
	for _, a := range allocs {
		if a.Node != n.id.Name {
			continue
		}
		app, err := n.store.Spec(a.App, a.Version)
		if err != nil {
			continue
		}
		if img, err := n.images.Get(app.Image); err == nil && img.ID == id {
			return true
		}
	}
	return false
}

func apiImages(imgs []image.Image) []api.Image {
	out := make([]api.Image, 0, len(imgs))
	for _, im := range imgs {
		out = append(out, api.Image{Ref: im.Ref, Digest: im.Digest, ID: im.ID, Size: im.Size, Platform: im.Platform, Created: im.Created})
	}
	return out
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/apiserver"
	"github.com/shoal-edge/shoal/runtime/image"
	"github.com/shoal-edge/shoal/store"
)

// imageBackend answers the API's image commands (apiserver.Images) for
// this node's image store. Removal asks which apps placed on this node use
// an image, from the replicated state.
type imageBackend struct {
	node   string // this node's name: its allocations
	images *image.Store
	placed placedSpecs
}

// placedSpecs is what the image backend needs of the desired state: the
// allocations, and the spec version each runs.
type placedSpecs interface {
	Allocations() ([]api.Allocation, error)
	Spec(app string, version uint64) (api.App, error)
}

var (
	_ apiserver.Images = (*imageBackend)(nil)
	_ placedSpecs      = (*store.Store)(nil)
)

func newImageBackend(node string, images *image.Store, placed placedSpecs) *imageBackend {
	return &imageBackend{node: node, images: images, placed: placed}
}

// ImportImage loads an image tarball into this node's store.
func (b *imageBackend) ImportImage(ctx context.Context, r io.Reader) ([]api.Image, error) {
	imgs, err := b.images.Import(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v%s", api.ErrInvalid, err, limitHint(err))
	}
	return apiImages(imgs), nil
}

// ListImages lists this node's images.
func (b *imageBackend) ListImages(ctx context.Context) ([]api.Image, error) {
	imgs, err := b.images.List()
	if err != nil {
		return nil, err
	}
	return apiImages(imgs), nil
}

// PullImage pulls from a registry into this node's store.
func (b *imageBackend) PullImage(ctx context.Context, req api.PullRequest, progress func(done, total int64)) (api.Image, error) {
	img, err := b.images.Pull(ctx, req.Ref, image.PullOptions{
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
func (b *imageBackend) RemoveImages(ctx context.Context, refs []string) error {
	var errs []error
	for _, ref := range refs {
		if _, err := b.images.Get(ref); err != nil {
			if errors.Is(err, image.ErrNotFound) {
				err = fmt.Errorf("image %s: %w", ref, api.ErrNotFound)
			}
			errs = append(errs, err)
			continue
		}
		users, err := b.imageUsers(ref)
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
		err := b.images.RemoveUnlessUsed(ref, b.imageInUse)
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
func (b *imageBackend) imageUsers(ref string) ([]string, error) {
	placed, err := b.placedImages()
	if err != nil {
		return nil, fmt.Errorf("image %s: read allocations: %w", ref, err)
	}
	var users []string
	for _, p := range placed {
		if slices.Contains(users, p.app) {
			continue
		}
		hit, err := b.images.RemoveTakes(ref, p.image)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		if hit {
			users = append(users, p.app)
		}
	}
	slices.Sort(users)
	return users, nil
}

// placedImage is the image an instance placed on this node runs.
type placedImage struct{ app, image string }

// placedImages are the images of the instances placed on this node, each
// by the spec version its allocation names (two versions of an app may
// run two images during a change).
func (b *imageBackend) placedImages() ([]placedImage, error) {
	allocs, err := b.placed.Allocations()
	if err != nil {
		return nil, err
	}
	var out []placedImage
	for _, a := range allocs {
		if a.Node != b.node {
			continue
		}
		if app, err := b.placed.Spec(a.App, a.Version); err == nil {
			out = append(out, placedImage{app: a.App, image: app.Image})
		}
	}
	return out, nil
}

func appList(apps []string) string {
	if len(apps) == 1 {
		return "app " + apps[0]
	}
	return "apps " + strings.Join(apps, ", ")
}

// imageInUse says whether an instance placed on this node runs id.
func (b *imageBackend) imageInUse(id string) bool {
	placed, err := b.placedImages()
	if err != nil {
		return true // when in doubt, keep the image
	}
	for _, p := range placed {
		if img, err := b.images.Get(p.image); err == nil && img.ID == id {
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

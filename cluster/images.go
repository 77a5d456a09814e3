package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"

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

// RemoveImage removes an image that no app placed on this node uses.
func (n *Node) RemoveImage(ctx context.Context, ref string) error {
	err := n.images.RemoveUnlessUsed(ref, n.imageInUse)
	switch {
	case errors.Is(err, image.ErrNotFound):
		return fmt.Errorf("image %s: %w", ref, api.ErrNotFound)
	case errors.Is(err, image.ErrInUse):
		return fmt.Errorf("image %s is used by an app on this node: remove the app first: %w", ref, api.ErrImageUsed)
	}
	return err
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
		app, err := n.store.App(a.App)
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

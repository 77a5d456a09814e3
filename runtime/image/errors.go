package image

import "errors"

// ErrNotFound is returned (wrapped) when a reference names no stored image.
var ErrNotFound = errors.New("image not found")

// ErrUnknownFormat is returned (wrapped) by Import when the archive is neither
// a docker-archive nor an OCI image layout.
var ErrUnknownFormat = errors.New("unknown image archive format")

// ErrUnsafeLayer is returned (wrapped) when a layer tries to write outside
// the root filesystem it is unpacked into.
var ErrUnsafeLayer = errors.New("unsafe layer entry")

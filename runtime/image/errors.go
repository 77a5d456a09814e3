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

// ErrInUse is returned (wrapped) by RemoveUnlessUsed when removing a name
// would delete an image that a container still uses.
var ErrInUse = errors.New("image in use")

// ErrNoPlatform is returned (wrapped) when an image or index offers nothing
// for the wanted platform; the message names the platforms it does offer.
var ErrNoPlatform = errors.New("no image for platform")

// ErrUnauthorized is returned (wrapped) by Pull when the registry refuses
// the request for lack of valid credentials (HTTP 401 or 403).
var ErrUnauthorized = errors.New("registry authentication failed")

// ErrManifestUnknown is returned (wrapped) by Pull when the registry has no
// such repository, tag or digest.
var ErrManifestUnknown = errors.New("manifest unknown")

// ErrUnreachable is returned (wrapped) by Pull when the registry's host
// cannot be resolved or connected to.
var ErrUnreachable = errors.New("registry unreachable")

// ErrNoSpace is returned (wrapped) when an import or pull needs more disk
// space than the store's filesystem has free; nothing is written then.
var ErrNoSpace = errors.New("not enough disk space")

// ErrTooLarge is returned (wrapped) when an image's files add up to more
// than Config.MaxUnpacked: by Import and Pull, which then store nothing,
// and by Rootfs for an image stored before the limit was lowered.
var ErrTooLarge = errors.New("image too large")

// ErrOversized is returned (wrapped) by Pull and Import when a manifest,
// index or config is bigger than shoal reads, or a blob holds more than
// the size declared for it.
var ErrOversized = errors.New("oversized")

// ErrStalled is returned (wrapped) by Pull when the registry sent nothing
// for Config.PullStall while a request was under way.
var ErrStalled = errors.New("registry stalled")

// Package image owns the node's image store: importing image archives and
// pulling images from registries, keeping their content once by digest, naming them, and unpacking them into
// read-only root filesystems that containers put an overlay on.
//
// # Basics
//
// A Store is opened on a directory with New. Import reads a docker-archive
// (`docker save`, `skopeo copy ... docker-archive:`) or an OCI image-layout
// tarball, plain or compressed, and returns the images it named. List, Get
// and Remove manage the names; Rootfs unpacks an image once and returns the
// cached directory and its run configuration afterwards.
//
// Pull fetches an image from a registry (by tag or by digest, through a
// multi-platform index to the image for the store's platform or the one
// asked for) and names it like an import; PullOptions carry credentials,
// Insecure and a progress callback. RemoveUnlessUsed removes a name unless
// that would delete an image a container uses (ErrInUse), and GC deletes
// whatever no name refers to.
//
// References are normalised with go-containerregistry's name package, so
// "hello:1", "docker.io/library/hello:1" and "index.docker.io/library/hello:1"
// are one image, displayed in the short familiar form "hello:1". An image
// that an archive does not name is known by its manifest digest.
//
// # On disk
//
// Root is itself a valid OCI image layout, readable by other OCI tools:
//
//	ROOT/
//	  oci-layout                 {"imageLayoutVersion":"1.0.0"}
//	  index.json                 the names: one descriptor per ref, annotated with
//	                             org.opencontainers.image.ref.name = full canonical ref
//	                             (written atomically: temp file, fsync, rename)
//	  blobs/sha256/HEX           manifests, configs and layers, each once
//	  rootfs/CONFIGHEX/          unpacked root filesystems, keyed by image ID
//	  tmp/                       spooled archives, staged blobs, half-unpacked
//	                             rootfs, garbage being deleted; emptied by New,
//	                             and of what nothing in progress owns by GC
//
// An import or pull stages and verifies every blob (digest and size) under
// tmp/ first and only then moves the blobs into blobs/ and rewrites
// index.json, so a truncated or hostile archive, a broken download or a
// cancelled pull leaves the store as it was. Blobs are content-addressed: a
// blob already stored is neither copied nor downloaded again. A rootfs is unpacked under tmp/
// and renamed into rootfs/ when complete, so a crash never leaves a partial
// rootfs that looks complete.
//
// # Pulling
//
// A registry is reached over verified HTTPS. Plain HTTP is used only for a
// loopback registry (localhost, 127.0.0.0/8, ::1) or with
// PullOptions.Insecure, which also accepts any TLS certificate;
// go-containerregistry's own fallback to HTTP for private addresses is
// refused. Credentials are PullOptions.Username/Password, else the
// registry's "auths" entry in a docker config.json (PullOptions.DockerConfig,
// $DOCKER_CONFIG/config.json or ~/.docker/config.json); credential helpers
// are not run. An index is resolved with the platform rule in platform.go:
// os and architecture equal, variants normalised ("arm" is "arm/v7",
// "arm64" is "arm64/v8"), and on 32-bit arm an older variant accepted when
// the wanted one is missing (v7 takes v6, never the reverse). Errors wrap
// ErrUnauthorized, ErrManifestUnknown, ErrUnreachable, ErrNoPlatform, the
// limits' errors below, or the context's error.
//
// # Limits
//
// Sizes an archive or a registry states are believed only up to a limit,
// and every refusal comes before the store changes:
//
//   - Free space: the layers a manifest (or an archive) declares, less
//     those already stored, must fit in the free space of Root's
//     filesystem, or Import and Pull fail with ErrNoSpace before staging a
//     byte; a compressed archive is spooled no further than the free
//     space. A disk that fills up while unpacking is ErrNoSpace too.
//   - Declared sizes: a blob is read no further than the size declared for
//     it (ErrOversized).
//   - Unpacked size: every layer is read once, decompressed, before the
//     image is stored; its diff_id is checked and its regular files are
//     added up against Config.MaxUnpacked (ErrTooLarge), counting a sparse
//     file at its apparent size, so a tiny layer with a huge sparse file or
//     a gzip bomb is refused at Import or Pull. Unpacking counts the same
//     budget, and writes block-sized runs of zeros as holes.
//   - Registry traffic: at most 10 redirects per request; no response but
//     a blob download is read past 4 MiB (manifests, indexes, tokens,
//     errors), a config past 8 MiB; a request that receives nothing for
//     Config.PullStall ends the pull (ErrStalled). An overall deadline is
//     the caller's, through the context.
//
// # Concurrency and garbage
//
// All methods are safe for concurrent use. Every change under Root is made
// with the store's lock held; long work (downloads, unpacking, deleting)
// happens outside it on paths marked busy, which GC and Remove skip: tmp/
// entries of operations in progress, and stored blobs an import in progress
// relies on without copying them again. Garbage is moved into tmp/gc-* under
// the lock and deleted after it. So GC may run at any time, alongside
// Import, Pull, Rootfs and Remove.
//
// # Caveats
//
// One Store owns its Root: two Stores (or two processes) on the same
// directory are not supported. Remove and GC delete blobs and unpacked
// rootfs directories no name refers to any more, without asking about
// containers; use RemoveUnlessUsed, whose inUse callback the caller answers
// from its containers, so that no rootfs in use loses its name. Unpacking strips setuid and
// setgid bits, skips device nodes and FIFOs, and ignores extended attributes.
// Symlinks met while unpacking are resolved inside the rootfs, as a process
// chrooted there would see them; entry names or hardlink targets that climb
// out of the rootfs with ".." are refused.
package image

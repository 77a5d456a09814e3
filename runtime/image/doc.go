// Package image owns the node's image store: importing image archives,
// keeping their content once by digest, naming them, and unpacking them into
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
//	                             rootfs; emptied by New
//
// An import stages and verifies every blob under tmp/ first and only then
// moves the blobs into blobs/ and rewrites index.json, so a truncated or
// hostile archive leaves the store as it was. A rootfs is unpacked under tmp/
// and renamed into rootfs/ when complete, so a crash never leaves a partial
// rootfs that looks complete.
//
// # Caveats
//
// One Store owns its Root: two Stores (or two processes) on the same
// directory are not supported. Remove deletes blobs and unpacked rootfs
// directories no name refers to any more; callers must not remove an image
// whose rootfs is still in use by a container. Unpacking strips setuid and
// setgid bits, skips device nodes and FIFOs, and ignores extended attributes.
// Symlinks met while unpacking are resolved inside the rootfs, as a process
// chrooted there would see them; entry names or hardlink targets that climb
// out of the rootfs with ".." are refused.
package image

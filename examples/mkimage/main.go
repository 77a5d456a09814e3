// Command mkimage packs static binaries into a one-layer image tarball that
// `shoal image import` loads:
//
//	go run ./examples/mkimage -ref hello:1 -o hello.tar -entrypoint /hello bin/hello:/hello
//
// Each argument is HOSTFILE:PATH_IN_IMAGE.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/shoal-edge/shoal/internal/imagebuild"
)

func main() {
	ref := flag.String("ref", "", "image reference, e.g. hello:1")
	out := flag.String("o", "", "output tarball")
	entry := flag.String("entrypoint", "", "entrypoint path in the image")
	format := flag.String("format", "docker", "docker (docker-archive) or oci (OCI layout)")
	arch := flag.String("arch", "", "image architecture (default: this machine's)")
	flag.Parse()
	if *ref == "" || *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: mkimage -ref REF -o FILE [-entrypoint PATH] HOSTFILE:PATH...")
		os.Exit(2)
	}
	spec := imagebuild.Spec{Ref: *ref, Arch: *arch}
	if *entry != "" {
		spec.Entrypoint = []string{*entry}
	}
	for _, a := range flag.Args() {
		src, dst, ok := strings.Cut(a, ":")
		if !ok {
			fmt.Fprintf(os.Stderr, "mkimage: %q: want HOSTFILE:PATH\n", a)
			os.Exit(2)
		}
		spec.Files = append(spec.Files, imagebuild.File{Path: dst, Mode: 0o755, Src: src})
	}
	write := imagebuild.WriteDockerArchive
	if *format == "oci" {
		write = imagebuild.WriteOCILayout
	}
	if err := write(*out, spec); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

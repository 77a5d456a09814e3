package image

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// canonicalRef turns what a user writes ("hello:1") into the full name the
// index is keyed by ("index.docker.io/library/hello:1"), so every spelling of
// one reference finds the same image.
func canonicalRef(s string) (string, error) {
	r, err := name.ParseReference(s)
	if err != nil {
		return "", fmt.Errorf("parse image reference %q: %w", s, err)
	}
	return r.Name(), nil
}

// familiarRef is the short form people write and expect to read back:
// Docker Hub's registry and its "library/" namespace are dropped.
func familiarRef(canonical string) string {
	r, err := name.ParseReference(canonical)
	if err != nil {
		return canonical
	}
	repo := r.Context().RepositoryStr()
	if r.Context().RegistryStr() == name.DefaultRegistry {
		if rest, ok := strings.CutPrefix(repo, "library/"); ok && !strings.Contains(rest, "/") {
			repo = rest
		}
	} else {
		repo = r.Context().RegistryStr() + "/" + repo
	}
	switch r := r.(type) {
	case name.Tag:
		return repo + ":" + r.TagStr()
	case name.Digest:
		return repo + "@" + r.DigestStr()
	}
	return canonical
}

// parseDigestRef reports whether s is a bare digest ("sha256:HEX"), which
// names an image by manifest digest or ID rather than by tag.
func parseDigestRef(s string) (v1.Hash, bool) {
	if !strings.HasPrefix(s, "sha256:") {
		return v1.Hash{}, false
	}
	h, err := v1.NewHash(s)
	if err != nil || len(h.Hex) != 64 {
		return v1.Hash{}, false
	}
	return h, true
}

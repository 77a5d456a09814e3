package image

import (
	"fmt"
	"runtime"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Platform selection, shared by Import and Pull.
//
// The rule, applied to a multi-platform index and to the config of a
// single-platform image alike:
//
//   - OS and architecture must be equal: no amd64 image on a 386 device, no
//     32-bit arm image on an arm64 device.
//   - Variants are compared after normalising them the way Docker and
//     containerd do: "arm" without a variant is "arm/v7", "arm64" without
//     one is "arm64/v8". So an index entry "linux/arm" matches a v7 device,
//     and a v6 device never gets it.
//   - On 32-bit arm an older variant runs on a newer CPU, so when no entry
//     has the wanted variant the newest older one is taken: v7 accepts v7,
//     then v6, then v5; v6 accepts v6, then v5. Never the other way round.
//   - Other architectures' variants (amd64/v3, ...) must be equal.
//   - Among equally good entries the first one in the index wins. A lone
//     entry without any platform is taken as it is.

// armVariants lists, best first, the 32-bit arm variants a CPU of variant
// v runs.
func armVariants(v string) []string {
	all := []string{"v8", "v7", "v6", "v5"}
	if i := slices.Index(all, v); i >= 0 {
		return all[i:]
	}
	return []string{v}
}

// parsePlatform reads "os/arch[/variant]".
func parsePlatform(s string) (v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{}, err
	}
	if p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant], e.g. linux/arm/v7", s)
	}
	return *p, nil
}

// storePlatform parses Config.Platform, defaulting to the platform this
// binary runs on.
func storePlatform(s string) (v1.Platform, error) {
	if s == "" {
		p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
		if runtime.GOARCH == "arm" {
			p.Variant = "v7"
		}
		return p, nil
	}
	p, err := parsePlatform(s)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("image store: %w", err)
	}
	return p, nil
}

func normalizeVariant(arch, variant string) string {
	switch {
	case arch == "arm" && variant == "":
		return "v7"
	case arch == "arm64" && variant == "":
		return "v8"
	}
	return variant
}

// platformRank says how well an image for have suits a device of platform
// want: 0 is a perfect match, higher is worse, -1 is unusable.
func platformRank(want, have v1.Platform) int {
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return -1
	}
	wv := normalizeVariant(want.Architecture, want.Variant)
	hv := normalizeVariant(have.Architecture, have.Variant)
	if want.Architecture == "arm" {
		return slices.Index(armVariants(wv), hv)
	}
	if wv != hv {
		return -1
	}
	return 0
}

// pickPlatform chooses the manifest for want from an index's entries. The
// error wraps ErrNoPlatform and names the platforms the index offers.
func pickPlatform(ms []v1.Descriptor, want v1.Platform) (v1.Descriptor, error) {
	best, bestRank := -1, -1
	for i, m := range ms {
		if m.Platform == nil {
			continue
		}
		r := platformRank(want, *m.Platform)
		if r >= 0 && (best < 0 || r < bestRank) {
			best, bestRank = i, r
		}
	}
	if best >= 0 {
		return ms[best], nil
	}
	if len(ms) == 1 && ms[0].Platform == nil {
		return ms[0], nil
	}
	return v1.Descriptor{}, fmt.Errorf("%w %s; available: %s", ErrNoPlatform, want.String(), availablePlatforms(ms))
}

// availablePlatforms lists an index's platforms for an error message,
// leaving out the "unknown/unknown" entries buildx adds for attestations.
func availablePlatforms(ms []v1.Descriptor) string {
	var out []string
	for _, m := range ms {
		if m.Platform == nil || m.Platform.OS == "unknown" {
			continue
		}
		if s := m.Platform.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

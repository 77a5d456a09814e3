package image

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestPickPlatform(t *testing.T) {
	entries := func(plats ...string) []v1.Descriptor {
		var ds []v1.Descriptor
		for i, s := range plats {
			d := v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(string(rune('a'+i)), 64)}}
			if s != "" {
				p, err := v1.ParsePlatform(s)
				if err != nil {
					t.Fatal(err)
				}
				d.Platform = p
			}
			ds = append(ds, d)
		}
		return ds
	}
	tests := []struct {
		index []string
		want  string
		pick  int // index of the entry picked; -1: ErrNoPlatform
	}{
		{[]string{"linux/amd64", "linux/arm64", "linux/arm/v7"}, "linux/arm/v7", 2},
		{[]string{"linux/amd64", "linux/arm64", "linux/arm/v7"}, "linux/arm64", 1},
		{[]string{"linux/amd64", "linux/arm64", "linux/arm/v7"}, "linux/arm64/v8", 1},
		{[]string{"linux/amd64", "linux/arm64/v8"}, "linux/arm64", 1},
		{[]string{"linux/amd64", "linux/arm64", "linux/arm/v7"}, "linux/arm/v6", -1},
		{[]string{"linux/arm/v6", "linux/arm/v7"}, "linux/arm/v7", 1},
		{[]string{"linux/arm/v7", "linux/arm/v6"}, "linux/arm/v6", 1},
		{[]string{"linux/arm/v5", "linux/arm/v6"}, "linux/arm/v7", 1}, // best older variant
		{[]string{"linux/arm"}, "linux/arm/v7", 0},                    // arm without variant is v7
		{[]string{"linux/arm"}, "linux/arm/v6", -1},
		{[]string{"linux/arm/v7"}, "linux/arm", 0},
		{[]string{"linux/arm/v7"}, "linux/arm64", -1}, // no 32-bit fallback for arm64
		{[]string{"linux/arm64"}, "linux/arm/v7", -1},
		{[]string{"linux/amd64/v3"}, "linux/amd64", -1},
		{[]string{"windows/amd64", "linux/amd64"}, "linux/amd64", 1},
		{[]string{"unknown/unknown", "linux/amd64"}, "linux/amd64", 1},
		{[]string{""}, "linux/riscv64", 0}, // a lone entry without platform
		{[]string{"", "linux/amd64"}, "linux/riscv64", -1},
		{nil, "linux/amd64", -1},
	}
	for _, tt := range tests {
		want, err := parsePlatform(tt.want)
		if err != nil {
			t.Fatal(err)
		}
		ms := entries(tt.index...)
		got, err := pickPlatform(ms, want)
		switch {
		case tt.pick < 0 && !errors.Is(err, ErrNoPlatform):
			t.Errorf("%v for %s: picked %v, %v; want ErrNoPlatform", tt.index, tt.want, got.Platform, err)
		case tt.pick >= 0 && (err != nil || got.Digest != ms[tt.pick].Digest):
			t.Errorf("%v for %s: picked %v, %v; want %s", tt.index, tt.want, got.Platform, err, tt.index[tt.pick])
		}
	}
	_, err := pickPlatform(entries("unknown/unknown", "linux/amd64", "linux/arm/v7", "linux/amd64"), v1.Platform{OS: "linux", Architecture: "s390x"})
	if err == nil || !strings.HasSuffix(err.Error(), "available: linux/amd64, linux/arm/v7") {
		t.Errorf("error %v does not list the platforms once each, without unknown/unknown", err)
	}
}

func TestParsePlatform(t *testing.T) {
	for _, s := range []string{"linux", "", "/amd64", "linux/arm/v7/x"} {
		if _, err := parsePlatform(s); err == nil {
			t.Errorf("parsePlatform(%q) succeeded", s)
		}
	}
	if _, err := New(Config{Root: t.TempDir(), Platform: "linux"}); err == nil {
		t.Error(`New with Platform "linux" succeeded`)
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "localhost:5000": true, "LOCALHOST:5000": true,
		"127.0.0.1": true, "127.0.0.1:5000": true, "127.8.9.10:1": true,
		"::1": true, "[::1]:5000": true,
		"10.0.0.1:5000": false, "192.168.1.2": false, "registry.local:5000": false,
		"foo.localhost:5000": false, "localhost.example.com": false, "[::2]:1": false,
	} {
		if got := isLoopbackHost(host); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestDockerConfigAuth(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	cfg := `{
  "auths": {
    "https://index.docker.io/v1/": {"auth": "aHViOmh1YnB3"},
    "registry.example:5000": {"username": "u", "password": "p"},
    "HTTPS://Other.Example/": {"identitytoken": "tok"},
    "helper.example": {}
  },
  "credHelpers": {"helper.example": "secretservice"}
}`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for reg, want := range map[string]authn.AuthConfig{
		"index.docker.io":       {Username: "hub", Password: "hubpw", Auth: "aHViOmh1YnB3"},
		"registry.example:5000": {Username: "u", Password: "p", Auth: "dTpw"},
		"other.example":         {IdentityToken: "tok"},
		"registry.example":      {},
		"helper.example":        {},
	} {
		got, err := dockerConfigAuth(path, reg)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: %+v, want %+v", reg, got, want)
		}
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := dockerConfigAuth(path, "x"); err == nil {
		t.Error("a broken config.json parsed")
	}
}

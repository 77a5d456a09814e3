package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// credentials are what one Pull authenticates with.
type credentials struct {
	authn.Authenticator
	// source says where they came from, for error messages: "" for none.
	source string
}

// authenticator picks the credentials for reg: the explicit username and
// password, else the docker config's entry for reg, else none.
func (o PullOptions) authenticator(reg name.Registry) (credentials, error) {
	if o.Username != "" || o.Password != "" {
		return credentials{authn.FromConfig(authn.AuthConfig{Username: o.Username, Password: o.Password}), "the given username and password"}, nil
	}
	path, explicit := o.DockerConfig, o.DockerConfig != ""
	if !explicit {
		if path = defaultDockerConfig(); path == "" {
			return credentials{Authenticator: authn.Anonymous}, nil
		}
	}
	ac, err := dockerConfigAuth(path, reg.RegistryStr())
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return credentials{Authenticator: authn.Anonymous}, nil
	}
	if err != nil {
		return credentials{}, fmt.Errorf("docker config: %w", err)
	}
	if ac == (authn.AuthConfig{}) {
		return credentials{Authenticator: authn.Anonymous}, nil
	}
	return credentials{authn.FromConfig(ac), path}, nil
}

// defaultDockerConfig is where docker keeps config.json: in $DOCKER_CONFIG,
// else in ~/.docker; "" when neither can be known.
func defaultDockerConfig() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, ".docker", "config.json")
}

// dockerHubHosts are the names docker login and config.json use for the
// registry go-containerregistry calls index.docker.io.
func dockerHubHosts() []string {
	return []string{name.DefaultRegistry, "docker.io", "registry-1.docker.io"}
}

// dockerConfigAuth returns the "auths" entry of the docker config.json at
// path for registry (host[:port]), or the zero AuthConfig when it has none.
// Keys are matched on their host: "https://index.docker.io/v1/" is
// index.docker.io. authn.AuthConfig decodes the base64 "auth" field.
func dockerConfigAuth(path, registry string) (authn.AuthConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return authn.AuthConfig{}, err
	}
	var cf struct {
		Auths map[string]authn.AuthConfig `json:"auths"`
	}
	if err := json.Unmarshal(b, &cf); err != nil {
		return authn.AuthConfig{}, fmt.Errorf("parse %s: %w", path, err)
	}
	wanted := []string{strings.ToLower(registry)}
	if slices.Contains(dockerHubHosts(), wanted[0]) {
		wanted = dockerHubHosts()
	}
	// Sorted keys, so that of two entries for one host the same one wins
	// every time.
	keys := make([]string, 0, len(cf.Auths))
	for k := range cf.Auths {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if slices.Contains(wanted, configKeyHost(k)) {
			return cf.Auths[k], nil
		}
	}
	return authn.AuthConfig{}, nil
}

// configKeyHost reduces a config.json "auths" key (a host, or a URL such
// as "https://host:5000/v1/") to host[:port], lower-cased.
func configKeyHost(k string) string {
	k = strings.ToLower(k)
	for _, p := range []string{"https://", "http://"} {
		k = strings.TrimPrefix(k, p)
	}
	host, _, _ := strings.Cut(k, "/")
	return host
}

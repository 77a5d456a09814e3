package image

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// isolateDockerConfig keeps the host's ~/.docker/config.json out of a test.
func isolateDockerConfig(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
}

func layerBytes(t testing.TB, img v1.Image, i int) (v1.Hash, []byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[i].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := layers[i].Digest()
	return h, b
}

func TestPullByTagAndDigest(t *testing.T) {
	isolateDockerConfig(t)
	ctx := context.Background()
	reg := newTestRegistry(t, nil)
	img := testImage(t, v1.Config{Cmd: []string{"/hello"}},
		makeTar(t, tarEntry{name: "base", body: noise(1, 64<<10)}),
		makeTar(t, tarEntry{name: "hello", body: "pulled", mode: 0o755}))
	digest := reg.push(t, "app:1", img)
	cfgName, _ := img.ConfigName()
	s := newTestStore(t)

	type call struct{ done, total int64 }
	var calls []call
	got, err := s.Pull(ctx, reg.host+"/app:1", PullOptions{Progress: func(done, total int64) { calls = append(calls, call{done, total}) }})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	var layerTotal int64
	for _, l := range m.Layers {
		layerTotal += l.Size
	}
	want := Image{Ref: reg.host + "/app:1", Digest: digest.String(), ID: cfgName.String(), Size: m.Config.Size + layerTotal, Platform: "linux/" + hostArch(), Created: got.Created}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pulled image (-want +got):\n%s", diff)
	}
	if len(calls) < 3 || calls[0] != (call{0, layerTotal}) || calls[len(calls)-1] != (call{layerTotal, layerTotal}) {
		t.Errorf("Progress calls %v..., want (0,%d) first and (%[2]d,%[2]d) last", calls[:min(3, len(calls))], layerTotal)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].done < calls[i-1].done || calls[i].total != layerTotal {
			t.Fatalf("Progress call %d = %v after %v", i, calls[i], calls[i-1])
		}
	}
	dir, rc, err := s.Rootfs(ctx, reg.host+"/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if b := readFile(t, filepath.Join(dir, "hello")); b != "pulled" || rc.Cmd[0] != "/hello" {
		t.Errorf("rootfs hello = %q, cmd %v", b, rc.Cmd)
	}

	byDigest := reg.host + "/app@" + digest.String()
	got2, err := s.Pull(ctx, byDigest, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got2.Ref != byDigest || got2.Digest != digest.String() {
		t.Errorf("pull by digest = %+v", got2)
	}
	list, _ := s.List()
	if len(list) != 2 {
		t.Errorf("List = %+v, want the tag and the digest name", list)
	}
	if ents, _ := os.ReadDir(s.path("tmp")); len(ents) != 0 {
		t.Errorf("tmp/ holds %d leftovers", len(ents))
	}
	if _, err := s.Pull(ctx, reg.host+"/app@sha256:"+strings.Repeat("0", 64), PullOptions{}); !errors.Is(err, ErrManifestUnknown) {
		t.Errorf("pull of an unknown digest = %v, want ErrManifestUnknown", err)
	}
}

func hostArch() string {
	p, _ := storePlatform("")
	return strings.TrimPrefix(p.String(), "linux/")
}

func TestPullMultiArchIndex(t *testing.T) {
	isolateDockerConfig(t)
	reg := newTestRegistry(t, nil)
	idx, digests := multiArchIndex(t, "linux/amd64", "linux/arm64", "linux/arm/v7")
	idxDigest := reg.pushIndex(t, "multi:1", idx)

	// By the index's digest: the name keeps that digest, the image is the
	// platform's.
	byDigest := reg.host + "/multi@" + idxDigest.String()
	got, err := newTestStore(t).Pull(context.Background(), byDigest, PullOptions{Platform: "linux/arm64"})
	if err != nil || got.Ref != byDigest || got.Digest != digests["linux/arm64"].String() {
		t.Errorf("Pull(%s) = %+v, %v; want the arm64 image %s under that name", byDigest, got, err, digests["linux/arm64"])
	}

	tests := []struct {
		store, opt string // Config.Platform, PullOptions.Platform
		want       string // platform pulled; "" for ErrNoPlatform
	}{
		{"", "linux/arm/v7", "linux/arm/v7"},
		{"", "linux/arm", "linux/arm/v7"},
		{"", "linux/arm64", "linux/arm64"},
		{"", "linux/amd64", "linux/amd64"},
		{"linux/arm64", "", "linux/arm64"},
		{"linux/arm/v7", "", "linux/arm/v7"},
		{"", "linux/arm/v6", ""}, // a v7 image does not run on v6
		{"", "linux/riscv64", ""},
		{"linux/s390x", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.store+"+"+tt.opt, func(t *testing.T) {
			s, err := New(Config{Root: filepath.Join(t.TempDir(), "images"), Platform: tt.store})
			if err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, s.root)
			got, err := s.Pull(context.Background(), reg.host+"/multi:1", PullOptions{Platform: tt.opt})
			if tt.want == "" {
				if !errors.Is(err, ErrNoPlatform) || !strings.Contains(err.Error(), "available: linux/amd64, linux/arm64, linux/arm/v7") {
					t.Fatalf("Pull = %v, want ErrNoPlatform naming the three platforms", err)
				}
				if diff := cmp.Diff(before, snapshot(t, s.root)); diff != "" {
					t.Errorf("failed pull changed the store (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Platform != tt.want || got.Digest != digests[tt.want].String() {
				t.Errorf("pulled %s %s, want %s %s", got.Platform, got.Digest, tt.want, digests[tt.want])
			}
			dir, _, err := s.Rootfs(context.Background(), got.Ref)
			if err != nil {
				t.Fatal(err)
			}
			if b := readFile(t, filepath.Join(dir, "platform")); b != tt.want {
				t.Errorf("rootfs says %q, want %q", b, tt.want)
			}
		})
	}

	// A single-platform image for another platform is refused too.
	reg.push(t, "arm64only:1", platformImage(t, "linux/arm64"))
	_, err = newTestStore(t).Pull(context.Background(), reg.host+"/arm64only:1", PullOptions{Platform: "linux/amd64"})
	if !errors.Is(err, ErrNoPlatform) || !strings.Contains(err.Error(), "linux/arm64") {
		t.Errorf("pull of an arm64 image for amd64 = %v, want ErrNoPlatform naming linux/arm64", err)
	}
}

func TestPullAuth(t *testing.T) {
	isolateDockerConfig(t)
	ctx := context.Background()
	reg := newTestRegistry(t, basicAuth("edge", "s3cret"))
	reg.auth = &authn.Basic{Username: "edge", Password: "s3cret"}
	reg.push(t, "private:1", helloImage(t, "private"))
	ref := reg.host + "/private:1"

	s := newTestStore(t)
	before := snapshot(t, s.root)
	_, err := s.Pull(ctx, ref, PullOptions{})
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "username and password") || !strings.Contains(err.Error(), "docker config.json") {
		t.Errorf("anonymous pull = %v, want ErrUnauthorized saying how to give credentials", err)
	}
	t.Log(err)
	_, err = s.Pull(ctx, ref, PullOptions{Username: "edge", Password: "wrong"})
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "rejected") {
		t.Errorf("pull with a wrong password = %v, want ErrUnauthorized saying the credentials were rejected", err)
	}
	t.Log(err)
	if diff := cmp.Diff(before, snapshot(t, s.root)); diff != "" {
		t.Errorf("refused pulls changed the store (-before +after):\n%s", diff)
	}
	if _, err := s.Pull(ctx, ref, PullOptions{Username: "edge", Password: "s3cret"}); err != nil {
		t.Errorf("pull with username and password: %v", err)
	}

	auth := base64.StdEncoding.EncodeToString([]byte("edge:s3cret"))
	for _, key := range []string{reg.host, "http://" + reg.host + "/v2/"} {
		t.Run("config key "+key, func(t *testing.T) {
			dir := t.TempDir()
			cfg := fmt.Sprintf(`{"auths":{"other.example:5000":{"auth":"b3RoZXI6eA=="},%q:{"auth":%q}},"credsStore":"desktop"}`, key, auth)
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := newTestStore(t).Pull(ctx, ref, PullOptions{DockerConfig: filepath.Join(dir, "config.json")}); err != nil {
				t.Errorf("pull with DockerConfig: %v", err)
			}
			t.Setenv("DOCKER_CONFIG", dir)
			if _, err := newTestStore(t).Pull(ctx, ref, PullOptions{}); err != nil {
				t.Errorf("pull with $DOCKER_CONFIG: %v", err)
			}
		})
	}
	if _, err := s.Pull(ctx, ref, PullOptions{DockerConfig: filepath.Join(t.TempDir(), "missing.json")}); err == nil || errors.Is(err, ErrUnauthorized) {
		t.Errorf("pull with a missing DockerConfig = %v, want an error about the file", err)
	}
}

func TestPullTwiceDownloadsNothingAgain(t *testing.T) {
	isolateDockerConfig(t)
	ctx := context.Background()
	reg := newTestRegistry(t, nil)
	base := makeTar(t, tarEntry{name: "base", body: noise(2, 32<<10)})
	one := testImage(t, v1.Config{}, base, makeTar(t, tarEntry{name: "v", body: "1"}))
	two := testImage(t, v1.Config{}, base, makeTar(t, tarEntry{name: "v", body: "2"}))
	reg.push(t, "app:1", one)
	reg.push(t, "app:2", two)
	s := newTestStore(t)

	reg.reset()
	first, err := s.Pull(ctx, reg.host+"/app:1", PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.blobGets(); n != 3 {
		t.Errorf("first pull fetched %d blobs, want config and 2 layers: %q", n, reg.requests())
	}
	before := snapshot(t, s.root)
	reg.reset()
	var calls int
	second, err := s.Pull(ctx, reg.host+"/app:1", PullOptions{Progress: func(done, total int64) {
		if calls++; done != 0 || total != 0 {
			t.Errorf("Progress(%d, %d) with nothing to download", done, total)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.blobGets(); n != 0 {
		t.Errorf("second pull fetched %d blobs: %q", n, reg.requests())
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("second pull (-first +second):\n%s", diff)
	}
	if diff := cmp.Diff(before, snapshot(t, s.root)); diff != "" {
		t.Errorf("second pull changed the store (-before +after):\n%s", diff)
	}

	// The shared base layer is not fetched for the second image.
	reg.reset()
	if _, err := s.Pull(ctx, reg.host+"/app:2", PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := reg.blobGets(); n != 2 {
		t.Errorf("pull of app:2 fetched %d blobs, want its config and top layer: %q", n, reg.requests())
	}
}

func TestPullBrokenLayerLeavesStoreUnchanged(t *testing.T) {
	isolateDockerConfig(t)
	img := testImage(t, v1.Config{}, makeTar(t, tarEntry{name: "big", body: noise(3, 64<<10)}))
	h, good := layerBytes(t, img, 0)
	flipped := []byte(string(good))
	flipped[len(flipped)/2] ^= 0xff

	tests := map[string]http.HandlerFunc{
		"truncated": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(good)))
			w.Write(good[:len(good)/2])
		},
		"truncated without length": func(w http.ResponseWriter, r *http.Request) {
			w.(http.Flusher).Flush() // chunked: the end looks clean
			w.Write(good[:len(good)/2])
		},
		"corrupt": func(w http.ResponseWriter, r *http.Request) {
			w.Write(flipped)
		},
		"too long": func(w http.ResponseWriter, r *http.Request) {
			w.(http.Flusher).Flush()
			w.Write(good)
			w.Write(good)
		},
	}
	for name, serve := range tests {
		t.Run(name, func(t *testing.T) {
			reg := newTestRegistry(t, onBlob(h, serve))
			reg.push(t, "app:1", img)
			s := newTestStore(t)
			mustImport(t, s, dockerArchive(t, helloImage(t, "other"), false, "other:1"))
			before := snapshot(t, s.root)
			if _, err := s.Pull(context.Background(), reg.host+"/app:1", PullOptions{}); err == nil {
				t.Fatal("Pull succeeded")
			} else {
				t.Log(err)
			}
			if diff := cmp.Diff(before, snapshot(t, s.root)); diff != "" {
				t.Errorf("failed pull changed the store (-before +after):\n%s", diff)
			}
		})
	}
}

func TestPullCancelledMidLayer(t *testing.T) {
	isolateDockerConfig(t)
	img := testImage(t, v1.Config{}, makeTar(t, tarEntry{name: "big", body: noise(4, 256<<10)}))
	h, body := layerBytes(t, img, 0)
	stop := make(chan struct{})
	reg := newTestRegistry(t, onBlob(h, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		select { // the rest never comes
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(func() { close(stop) }) // before the server closes
	reg.push(t, "app:1", img)
	s := newTestStore(t)
	before := snapshot(t, s.root)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := s.Pull(ctx, reg.host+"/app:1", PullOptions{Progress: func(done, total int64) {
		if done > 0 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Pull = %v, want context.Canceled", err)
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("error %q does not say it was cancelled", err)
	}
	if diff := cmp.Diff(before, snapshot(t, s.root)); diff != "" {
		t.Errorf("cancelled pull changed the store (-before +after):\n%s", diff)
	}
}

func TestPullErrors(t *testing.T) {
	isolateDockerConfig(t)
	ctx := context.Background()
	reg := newTestRegistry(t, nil)
	reg.push(t, "app:1", helloImage(t, "x"))
	s := newTestStore(t)

	for _, ref := range []string{reg.host + "/app:2", reg.host + "/nope:1"} {
		_, err := s.Pull(ctx, ref, PullOptions{})
		if !errors.Is(err, ErrManifestUnknown) {
			t.Errorf("Pull(%s) = %v, want ErrManifestUnknown", ref, err)
		}
		t.Log(err)
	}

	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	_, err = s.Pull(ctx, closed+"/app:1", PullOptions{})
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("Pull from a closed port = %v, want ErrUnreachable", err)
	}
	t.Log(err)

	if _, err := s.Pull(ctx, "Not A Ref!", PullOptions{}); err == nil {
		t.Error("Pull of an invalid reference succeeded")
	}
	if _, err := s.Pull(ctx, reg.host+"/app:1", PullOptions{Platform: "linux"}); err == nil {
		t.Error("Pull with platform \"linux\" succeeded")
	}

	// Resolution failures are classified without needing DNS in the test.
	dnsErr := &url.Error{Op: "Get", URL: "https://nope.invalid/v2/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "nope.invalid", IsNotFound: true}}}
	if err := explainPullError(ctx, name.MustParseReference("nope.invalid/app:1"), credentials{}, dnsErr); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "unknown host nope.invalid") {
		t.Errorf("explainPullError(DNS) = %v", err)
	}
	if len(s.index.Manifests) != 0 {
		t.Errorf("failed pulls named %d images", len(s.index.Manifests))
	}
}

func TestPullTLS(t *testing.T) {
	isolateDockerConfig(t)
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	// Push with the test server's own client, which trusts its certificate.
	ref, _ := name.ParseReference(host + "/app:1")
	if err := remote.Write(ref, helloImage(t, "tls"), remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}

	s := newTestStore(t)
	_, err := s.Pull(context.Background(), host+"/app:1", PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "Insecure") {
		t.Errorf("Pull from a self-signed registry = %v, want an error suggesting Insecure", err)
	}
	t.Log(err)
	if _, err := s.Pull(context.Background(), host+"/app:1", PullOptions{Insecure: true}); err != nil {
		t.Errorf("Insecure Pull: %v", err)
	}
}

func TestPullTransportRefusesPlainHTTPToOtherHosts(t *testing.T) {
	for _, tt := range []struct {
		url      string
		insecure bool
		refused  bool
	}{
		{"http://10.0.0.5:5000/v2/", false, true},
		{"http://registry.example/v2/", false, true},
		{"http://10.0.0.5:5000/v2/", true, false},
		{"http://127.0.0.2:1/v2/", false, false},
		{"http://localhost:1/v2/", false, false},
		{"http://[::1]:1/v2/", false, false},
	} {
		watch, _, stop := newStallWatch(context.Background(), "test", time.Minute)
		defer stop()
		tr := newPullTransport(tt.insecure, watch)
		req, _ := http.NewRequest(http.MethodGet, tt.url, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // nothing is really sent
		resp, err := tr.RoundTrip(req.WithContext(ctx))
		if resp != nil {
			resp.Body.Close()
		}
		if got := errors.Is(err, errPlainHTTP); got != tt.refused {
			t.Errorf("%s insecure=%v: err %v, refused %v, want %v", tt.url, tt.insecure, err, got, tt.refused)
		}
	}
}

package image

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// onManifests serves requests for manifests with serve, everything else
// normally.
func onManifests(serve http.HandlerFunc) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				serve(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// pullWithin pulls ref from a fresh store with PullStall stall, failing t
// if the pull takes longer than d (the test's bound, not the store's).
func pullWithin(t *testing.T, d, stall time.Duration, ref string) (*Store, error) {
	t.Helper()
	s, err := New(Config{Root: t.TempDir() + "/images", PullStall: stall})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	_, err = s.Pull(ctx, ref, PullOptions{})
	if took := time.Since(start); took >= d {
		t.Errorf("pull of %s still going after %s: %v", ref, took.Round(time.Millisecond), err)
	}
	return s, err
}

// A registry that redirects forever is given up after ten redirects,
// within seconds.
func TestPullGivesUpARedirectLoop(t *testing.T) {
	isolateDockerConfig(t)
	var hops atomic.Int64
	reg := newTestRegistry(t, onManifests(func(w http.ResponseWriter, r *http.Request) {
		n := hops.Add(1)
		http.Redirect(w, r, fmt.Sprintf("%s?hop=%d", r.URL.Path, n), http.StatusFound)
	}))
	s, err := pullWithin(t, 10*time.Second, time.Minute, reg.host+"/loop:1")
	if !errors.Is(err, errRedirectLoop) || !strings.Contains(err.Error(), "redirected more than 10 times") {
		t.Fatalf("Pull = %v, want it to give up after 10 redirects", err)
	}
	t.Log(err)
	// go-containerregistry may retry a request; each try stops at 11 hops.
	if n := hops.Load(); n > 100 {
		t.Errorf("registry answered %d redirects", n)
	}
	checkNothingLeft(t, s, []string{})
}

// A manifest that never ends is read no further than 4 MiB.
func TestPullRefusesAnEndlessManifest(t *testing.T) {
	isolateDockerConfig(t)
	var sent atomic.Int64
	reg := newTestRegistry(t, onManifests(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		if r.Method == http.MethodHead {
			return
		}
		chunk := []byte(strings.Repeat(" ", 64<<10))
		for r.Context().Err() == nil {
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil || sent.Load() > 200<<20 {
				return
			}
		}
	}))
	s, err := pullWithin(t, 20*time.Second, time.Minute, reg.host+"/endless:1")
	if !errors.Is(err, ErrOversized) || !strings.Contains(err.Error(), "4 MiB") {
		t.Fatalf("Pull = %v, want ErrOversized at 4 MiB", err)
	}
	t.Log(err)
	// What the kernel buffers on loopback comes on top of what was read.
	if n := sent.Load(); n > 16<<20 {
		t.Errorf("registry got to send %d MiB", n>>20)
	}
	t.Logf("registry sent %d KiB", sent.Load()>>10)
	checkNothingLeft(t, s, []string{})
}

// stallingBlob serves the first bytes of every blob and then nothing more
// until the client goes.
func stallingBlob(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			next.ServeHTTP(w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
		w.Write([]byte{0x1f, 0x8b})
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
}

// A registry that stops sending fails the pull after PullStall, naming
// the registry, and leaves nothing behind.
func TestPullStallTimeout(t *testing.T) {
	isolateDockerConfig(t)
	reg := newTestRegistry(t, stallingBlob)
	reg.push(t, "app:1", testImage(t, v1.Config{}, makeTar(t, tarEntry{name: "f", body: "x"})))
	s, err := pullWithin(t, 10*time.Second, 500*time.Millisecond, reg.host+"/app:1")
	if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "registry stalled: "+reg.host+" sent nothing for 500ms") {
		t.Fatalf("Pull = %v, want ErrStalled naming the registry and the time", err)
	}
	t.Log(err)
	checkNothingLeft(t, s, []string{})
}

// A slow registry that keeps sending is not a stalled one: every byte
// puts the stall deadline off.
func TestPullSlowButSteadyIsNotStalled(t *testing.T) {
	isolateDockerConfig(t)
	reg := newTestRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			b := rec.Body.Bytes()
			// Ten pieces, 150ms apart: 1.5s in all, never 400ms silent.
			step := (len(b) + 9) / 10
			for i := 0; i < len(b); i += step {
				time.Sleep(150 * time.Millisecond) // the registry's pace, not a wait for state
				w.Write(b[i:min(i+step, len(b))])
				w.(http.Flusher).Flush()
			}
		})
	})
	reg.push(t, "app:1", testImage(t, v1.Config{}, makeTar(t, tarEntry{name: "f", body: noise(5, 4096)})))
	if _, err := pullWithin(t, 20*time.Second, 400*time.Millisecond, reg.host+"/app:1"); err != nil {
		t.Fatalf("Pull from a slow registry: %v", err)
	}
}

// A blob sent from elsewhere, as registries redirect blobs to a CDN, is
// not held to the size limit of manifests.
func TestPullFollowsABlobRedirect(t *testing.T) {
	isolateDockerConfig(t)
	reg := newTestRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasPrefix(r.URL.Path, "/cdn/"):
				r.URL.Path = "/v2/" + strings.ReplaceAll(strings.TrimPrefix(r.URL.Path, "/cdn/"), "_", "/")
				next.ServeHTTP(w, r)
			case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/"):
				// A path of the CDN's own, without "/blobs/" in it.
				http.Redirect(w, r, "/cdn/"+strings.ReplaceAll(strings.TrimPrefix(r.URL.Path, "/v2/"), "/", "_"), http.StatusTemporaryRedirect)
			default:
				next.ServeHTTP(w, r)
			}
		})
	})
	reg.push(t, "app:1", testImage(t, v1.Config{}, makeTar(t, tarEntry{name: "f", body: noise(11, 6<<20)})))
	if _, err := pullWithin(t, 30*time.Second, time.Minute, reg.host+"/app:1"); err != nil {
		t.Fatalf("Pull of a 6 MiB blob through a redirect: %v", err)
	}
}

package e2e

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/shoal-edge/shoal/internal/imagebuild"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// hostileRegistry serves a registry on loopback holding a tiny image as
// repo:1, with wrap between the client and it once the image is pushed;
// it returns host:port.
func hostileRegistry(t *testing.T, repo string, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	hostile := wrap(reg)
	var pushed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pushed.Load() {
			hostile.ServeHTTP(w, r)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	archive := filepath.Join(t.TempDir(), "tiny.tar")
	if err := imagebuild.WriteDockerArchive(archive, imagebuild.Spec{Ref: "tiny:1", Files: []imagebuild.File{{Path: "/f", Data: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/"+repo+":1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	pushed.Store(true)
	return host
}

// onBlobGet serves blob downloads with serve, everything else normally.
func onBlobGet(serve http.HandlerFunc) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				serve(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// storeLeftovers lists what an image store holds besides its names:
// work in progress, blobs, unpacked root filesystems.
func storeLeftovers(dataDir string) []string {
	var out []string
	for _, d := range []string{"tmp", "blobs/sha256", "rootfs"} {
		ents, _ := os.ReadDir(filepath.Join(dataDir, "images", d))
		for _, e := range ents {
			out = append(out, d+"/"+e.Name())
		}
	}
	return out
}

// Hostile images and registries meet the node's limits: an import or pull
// that would fill the disk is refused with a clear error and leaves
// nothing; a pull for an app that stalls or drags on is given up, shown in
// ps, and retried.
func TestImageLimits(t *testing.T) {
	n := newNode(t, "e2e-limits")
	n.args = append(n.args, "--image-max-unpacked", "256Mi", "--image-pull-stall", "1s", "--image-pull-timeout", "3s")
	n.start()

	sparse, err := imagebuild.SparseLayer("big", 100<<30, []byte("end"))
	if err != nil {
		t.Fatal(err)
	}
	zeros, err := imagebuild.ZerosLayer(1024, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		layer []byte
	}{{"sparse-100g", sparse}, {"gzip-1g", zeros}} {
		archive := filepath.Join(t.TempDir(), tc.name+".tar")
		if err := imagebuild.WriteLayersArchive(archive, tc.name+":1", tc.layer); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(archive); fi.Size() > 2<<20 {
			t.Fatalf("%s is %d bytes", archive, fi.Size())
		}
		_, errOut, code := n.shoal("image", "import", archive)
		if code == 0 || !strings.Contains(errOut, "image "+tc.name+":1") || !strings.Contains(errOut, "unpacks to more than 256 MiB") ||
			!strings.Contains(errOut, "--image-max-unpacked") {
			t.Errorf("image import %s: exit %d, %q; want a refusal naming the image, the limit and its flag", tc.name, code, errOut)
		}
		t.Logf("image import %s: %s", tc.name, strings.TrimSpace(errOut))
		if left := storeLeftovers(n.dataDir); len(left) > 0 {
			t.Errorf("after importing %s, the store holds %v", tc.name, left)
		}
	}
	if out := n.must("image", "ls"); strings.Contains(out, "sparse-100g") || strings.Contains(out, "gzip-1g") {
		t.Errorf("refused images listed:\n%s", out)
	}

	// A registry that redirects forever.
	loop := hostileRegistry(t, "loop", func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				http.Redirect(w, r, r.URL.Path+"?again", http.StatusFound)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	start := time.Now()
	_, errOut, code := n.shoal("image", "pull", loop+"/loop:1")
	if code == 0 || !strings.Contains(errOut, "redirected more than 10 times") || time.Since(start) > 15*time.Second {
		t.Errorf("image pull from a redirect loop: exit %d after %s, %q", code, time.Since(start).Round(time.Millisecond), errOut)
	}
	t.Logf("image pull from a redirect loop, after %s: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(errOut))

	// An app whose registry stops sending, and one whose registry sends a
	// byte now and then, forever.
	stall := hostileRegistry(t, "stall", onBlobGet(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	drip := hostileRegistry(t, "drip", onBlobGet(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				w.Write([]byte{0x1f})
				w.(http.Flusher).Flush()
			}
		}
	}))
	want := map[string]string{
		"stalled": "registry stalled: " + stall + " sent nothing for 1s",
		"dripped": "timed out after 3s",
	}
	n.must("apply", "-f", n.writeFile("stalled.yaml", fmt.Sprintf("name: stalled\nimage: %s/stall:1\ncommand: [/f]\n", stall)))
	n.must("apply", "-f", n.writeFile("dripped.yaml", fmt.Sprintf("name: dripped\nimage: %s/drip:1\ncommand: [/f]\n", drip)))
	var ps []struct {
		App, State, Error string
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		if err := n.json(&ps, "ps", "-o", "json"); err != nil {
			return err
		}
		if len(ps) != 2 {
			return fmt.Errorf("ps shows %d instances, want 2: %+v", len(ps), ps)
		}
		for _, in := range ps {
			if in.State != "pulling" || !strings.Contains(in.Error, want[in.App]) {
				return fmt.Errorf("%s is %s with error %q, want pulling with %q", in.App, in.State, in.Error, want[in.App])
			}
		}
		return nil
	})
	for _, in := range ps {
		t.Logf("ps: %s %s: %s", in.App, in.State, in.Error)
	}
	n.must("rm", "stalled")
	n.must("rm", "dripped")
	testutil.WaitFor(t, 20*time.Second, func() error {
		if left := storeLeftovers(n.dataDir); len(left) > 0 {
			return fmt.Errorf("after the failed pulls, the store holds %v", left)
		}
		return nil
	})
}

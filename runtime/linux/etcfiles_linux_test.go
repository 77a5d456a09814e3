package linux

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// Every container sees an /etc/hosts that resolves localhost and its own
// name, an /etc/hostname with its name and an /etc/resolv.conf it can use,
// over whatever the image holds there, with a read-only rootfs, with no
// /etc in the image, or with the image's resolv.conf a dangling symlink;
// none of them can be changed from inside; nothing is left after Delete.
func TestEtcFiles(t *testing.T) {
	rt, cfg := newRuntime(t)
	t.Parallel()
	hostResolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	hostHostsFile, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	// The image's own files: what a container saw before it got its own.
	stale := map[string]string{
		"etc/hosts":       "10.9.9.9\timage-host\n",
		"etc/hostname":    "image-host\n",
		"etc/resolv.conf": "nameserver 127.0.0.53\n",
	}
	cases := []struct {
		name        string
		hostNetwork bool
		readOnly    bool
		image       func(t *testing.T, img string)
	}{
		{"bridge read-only stale files", false, true, func(t *testing.T, img string) {
			for p, content := range stale {
				if err := os.WriteFile(filepath.Join(img, p), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"bridge no etc", false, false, func(t *testing.T, img string) {
			if err := os.RemoveAll(filepath.Join(img, "etc")); err != nil {
				t.Fatal(err)
			}
		}},
		{"bridge resolv.conf a dangling symlink", false, true, func(t *testing.T, img string) {
			if err := os.Symlink("/run/systemd/resolve/stub-resolv.conf", filepath.Join(img, "etc/resolv.conf")); err != nil {
				t.Fatal(err)
			}
		}},
		{"host network read-only stale files", true, true, func(t *testing.T, img string) {
			for p, content := range stale {
				if err := os.WriteFile(filepath.Join(img, p), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"host network no etc", true, true, func(t *testing.T, img string) {
			if err := os.RemoveAll(filepath.Join(img, "etc")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	etc := []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := testImage(t)
			tc.image(t, img)
			id := testID(t)
			out := &testutil.SyncBuffer{}
			c, err := rt.Start(context.Background(), Spec{
				ID: id, Image: img, Hostname: "etc-box", HostNetwork: tc.hostNetwork, ReadOnlyRootfs: tc.readOnly,
				Args:   []string{"/app", "-files", strings.Join(etc, ","), "-info", "-try-write", strings.Join(etc, ",")},
				Stdout: out, Stderr: testutil.LogWriter(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			ex := c.Wait()
			if err := c.Delete(); err != nil {
				t.Errorf("Delete: %v", err)
			}
			assertGone(t, cfg, id)
			if ex.Code != 0 {
				t.Fatalf("exit = %+v, output %q", ex, out.String())
			}
			filesLine, rest, _ := strings.Cut(out.String(), "\n")
			var files map[string]string
			if err := json.Unmarshal([]byte(filesLine), &files); err != nil {
				t.Fatalf("decode files %q: %v", filesLine, err)
			}
			in := decodeInfo(t, rest)

			hosts := files["/etc/hosts"]
			for _, want := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n", "127.0.1.1\tetc-box\n"} {
				if !strings.Contains(hosts, want) {
					t.Errorf("/etc/hosts lacks %q:\n%s", want, hosts)
				}
			}
			if strings.Contains(hosts, "image-host") {
				t.Errorf("/etc/hosts is the image's:\n%s", hosts)
			}
			if got := files["/etc/hostname"]; got != "etc-box\n" || in.Hostname != "etc-box" {
				t.Errorf("/etc/hostname = %q, host name %q; want etc-box", got, in.Hostname)
			}
			resolv := files["/etc/resolv.conf"]
			if tc.hostNetwork {
				if !strings.Contains(hosts, string(hostHostsFile)) {
					t.Errorf("/etc/hosts with the host's network lacks the host's entries:\n%s", hosts)
				}
				if resolv != string(hostResolv) {
					t.Errorf("/etc/resolv.conf = %q, want the host's %q", resolv, hostResolv)
				}
			} else {
				checkBridgeResolvConf(t, resolv, string(hostResolv))
			}
			for _, p := range etc {
				if !strings.Contains(in.Writes[p], erofs) {
					t.Errorf("writing %s: %q, want %q", p, in.Writes[p], erofs)
				}
			}
		})
	}
}

// checkBridgeResolvConf checks a container's resolv.conf against the
// host's: every nameserver of the host's that is not on loopback, and no
// loopback one.
func checkBridgeResolvConf(t *testing.T, got, host string) {
	t.Helper()
	if strings.HasPrefix(got, "error: ") {
		t.Fatalf("/etc/resolv.conf: %s", got)
	}
	servers := func(conf string) (remote, loopback []string) {
		for _, line := range strings.Split(conf, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "nameserver" {
				continue
			}
			if a, err := netip.ParseAddr(f[1]); err == nil && a.IsLoopback() {
				loopback = append(loopback, f[1])
			} else {
				remote = append(remote, f[1])
			}
		}
		return remote, loopback
	}
	want, _ := servers(host)
	have, loop := servers(got)
	if len(loop) > 0 {
		t.Errorf("/etc/resolv.conf names loopback nameservers %v:\n%s", loop, got)
	}
	if strings.Join(have, " ") != strings.Join(want, " ") {
		t.Errorf("/etc/resolv.conf nameservers = %v, want the host's non-loopback %v:\n%s", have, want, got)
	}
}

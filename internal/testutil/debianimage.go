package testutil

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DebianImageRef is the name BuildDebianImage's archive gives its image.
const DebianImageRef = "debian-apps:12"

// DebianImageCache is where BuildDebianImage keeps the archives it built
// and the packages it downloaded, between test runs.
const DebianImageCache = "/var/cache/shoal-test"

// debianImageRecipe changes whenever the way the image is made changes, so
// that an archive built the old way is not used.
const debianImageRecipe = "debian-apps 3"

// debianEssential are the packages every Debian system has (Essential:
// yes, and mawk for awk) and usr-is-merged for the merged /usr of Debian
// 12. apt installs only what is asked for and its dependencies on a system
// it believes empty: it does not add these by itself.
var debianEssential = []string{
	"base-files", "base-passwd", "bash", "bsdutils", "coreutils", "dash", "debianutils",
	"diffutils", "dpkg", "findutils", "grep", "gzip", "hostname", "init-system-helpers",
	"libc-bin", "login", "mawk", "ncurses-base", "ncurses-bin", "perl-base", "sed",
	"sysvinit-utils", "tar", "util-linux", "usr-is-merged",
}

// debianApps are the programs the image is for: servers as users run them
// from Debian and their clients (curl for HTTP).
var debianApps = []string{"redis-server", "redis-tools", "nginx", "mosquitto", "mosquitto-clients", "curl"}

// BuildDebianImage returns the path of a docker-archive of a Debian 12
// image, tagged DebianImageRef, made as debootstrap makes a Debian system: the
// host's apt downloads redis-server, nginx, mosquitto, their clients, curl
// and the essential packages with every dependency (no recommends), and
// dpkg installs them in a chroot, so their maintainer scripts run: users
// such as redis and mosquitto in /etc/passwd, the directories and owners
// of /var/lib and /var/log, the programs' own configuration, dynamically
// linked glibc programs. Like debian:bookworm-slim, it has no manuals,
// documentation or translations; its command is bash.
//
// The archive is kept in DebianImageCache under a name that hashes the
// package versions apt would install, so it is built once (one to two
// minutes, 36 MB of downloads) and again only when the host's apt lists
// bring newer packages. No service starts (policy-rc.d), and what the
// maintainer scripts run in the chroot lives in a PID namespace of its own
// that ends with it.
func BuildDebianImage(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "apt-get", "dpkg-deb", "tar", "unshare", "chroot", "umoci", "skopeo")
	if err := os.MkdirAll(DebianImageCache, 0o755); err != nil {
		t.Fatal(err)
	}
	// One build at a time: test binaries of several packages may ask at
	// once, and apt's private cache is shared.
	lock, err := os.OpenFile(filepath.Join(DebianImageCache, "debian-apps.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	b := &debianBuild{work: filepath.Join(DebianImageCache, "apt")}
	pkgs, err := b.resolve()
	if err != nil {
		t.Fatalf("debian image: %v", err)
	}
	sum := sha256.Sum256([]byte(debianImageRecipe + "\n" + strings.Join(pkgs, "\n")))
	archive := filepath.Join(DebianImageCache, "debian-apps-"+hex.EncodeToString(sum[:6])+".tar")
	if _, err := os.Stat(archive); err == nil {
		return archive
	}
	// Builds a killed test left behind; none runs now (the lock).
	stale, _ := filepath.Glob(filepath.Join(DebianImageCache, "build-*"))
	for _, d := range stale {
		os.RemoveAll(d)
	}
	start := time.Now()
	if err := b.build(archive); err != nil {
		t.Fatalf("debian image: %v", err)
	}
	t.Logf("built the Debian image %s in %s (%d packages)", archive, time.Since(start).Round(time.Second), len(pkgs))
	// Archives of older packages or recipes are not used again.
	old, _ := filepath.Glob(filepath.Join(DebianImageCache, "debian-apps-*.tar"))
	for _, p := range old {
		if p != archive {
			os.Remove(p)
		}
	}
	return archive
}

// debianBuild makes the image with the host's apt, dpkg, umoci and skopeo.
type debianBuild struct {
	// work holds apt's private state (an empty dpkg status: apt resolves
	// as for an empty system, and locks nothing of the host's) and its
	// download cache.
	work string
}

// apt runs apt-get against the private status and cache.
func (b *debianBuild) apt(args ...string) ([]byte, error) {
	status := filepath.Join(b.work, "status")
	if err := os.MkdirAll(filepath.Join(b.work, "cache", "archives", "partial"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(status, nil, 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("apt-get", append([]string{"-q", "--no-install-recommends",
		"-o", "Dir::State::status=" + status, "-o", "Dir::Cache=" + filepath.Join(b.work, "cache")}, args...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// resolve lists the packages the image holds as "name version arch",
// sorted, as apt would install them now. A machine whose apt lists were
// never fetched gets them first.
func (b *debianBuild) resolve() ([]string, error) {
	args := append(append([]string{"install", "--simulate"}, debianEssential...), debianApps...)
	out, err := b.apt(args...)
	if err != nil && bytes.Contains(out, []byte("Unable to locate package")) {
		if upd, uerr := exec.Command("apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
			return nil, fmt.Errorf("apt-get update: %w\n%s", uerr, upd)
		}
		out, err = b.apt(args...)
	}
	if err != nil {
		return nil, err
	}
	var pkgs []string
	for _, line := range strings.Split(string(out), "\n") {
		// "Inst nginx (1.22.1-9+deb12u12 Debian-Security:12/... [amd64])"
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "Inst" {
			pkgs = append(pkgs, f[1]+" "+strings.TrimPrefix(f[2], "(")+" "+strings.Trim(f[len(f)-1], "[])"))
		}
	}
	if len(pkgs) < len(debianEssential)+len(debianApps) {
		return nil, fmt.Errorf("apt would install only %d packages:\n%s", len(pkgs), out)
	}
	sort.Strings(pkgs)
	return pkgs, nil
}

// build downloads the packages, installs them into a root file system and
// writes the image's archive to archive, atomically.
func (b *debianBuild) build(archive string) error {
	if _, err := b.apt(append(append([]string{"install", "--yes", "--download-only"}, debianEssential...), debianApps...)...); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(DebianImageCache, "build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	layoutDir, bundle := filepath.Join(tmp, "oci"), filepath.Join(tmp, "bundle")
	if err := runTool("umoci", "init", "--layout", layoutDir); err != nil {
		return err
	}
	img := layoutDir + ":12"
	if err := runTool("umoci", "new", "--image", img); err != nil {
		return err
	}
	if err := runTool("umoci", "config", "--image", img, "--config.cmd", "bash",
		"--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"); err != nil {
		return err
	}
	if err := runTool("umoci", "unpack", "--image", img, bundle); err != nil {
		return err
	}
	root := filepath.Join(bundle, "rootfs")
	if err := b.install(root); err != nil {
		return err
	}
	if err := runTool("umoci", "repack", "--image", img, bundle); err != nil {
		return err
	}
	part := archive + ".part"
	os.Remove(part)
	if err := runTool("skopeo", "copy", "--quiet", "oci:"+img, "docker-archive:"+part+":"+DebianImageRef); err != nil {
		return err
	}
	return os.Rename(part, archive)
}

// debianSlim are the paths dpkg leaves out of debian:bookworm-slim.
var debianSlim = []string{
	"/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
	"/usr/share/groff/*", "/usr/share/linda/*", "/usr/share/lintian/*",
}

// chrootInstall runs in new mount and PID namespaces (the mounts and any
// process a maintainer script starts end with them): dpkg installs every
// downloaded package in the root $1, base-passwd and base-files first, as
// debootstrap does, with services kept from starting by policy-rc.d.
const chrootInstall = `set -e
root=$1
mount --bind /dev/null "$root/dev/null"
mount -t proc proc "$root/proc"
inroot() { chroot "$root" sh -c "$1"; }
inroot 'dpkg --force-unsafe-io --install --force-depends /var/cache/apt/archives/base-passwd_*.deb'
inroot 'dpkg --force-unsafe-io --install --force-depends /var/cache/apt/archives/base-files_*.deb'
inroot 'dpkg --force-unsafe-io --install --force-depends /var/cache/apt/archives/*.deb'
inroot 'dpkg --force-unsafe-io --configure --pending'
`

// install makes root a Debian system: merged /usr, the packages' files
// unpacked so that dpkg and its shell exist, then dpkg's own install.
func (b *debianBuild) install(root string) error {
	for _, d := range []string{"usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "dev", "proc",
		"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/cache/apt/archives", "etc/dpkg/dpkg.cfg.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		if err := os.Symlink("usr/"+d, filepath.Join(root, d)); err != nil {
			return err
		}
	}
	var slim strings.Builder
	slim.WriteString("# As in debian:bookworm-slim.\n")
	for _, p := range debianSlim {
		fmt.Fprintf(&slim, "path-exclude %s\n", p)
	}
	slim.WriteString("path-include /usr/share/doc/*/copyright\n")
	files := map[string]string{
		"etc/dpkg/dpkg.cfg.d/slim": slim.String(),
		"var/lib/dpkg/status":      "",
		"var/lib/dpkg/available":   "",
		"usr/sbin/policy-rc.d":     "#!/bin/sh\nexit 101\n",
		"dev/null":                 "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "usr/sbin/policy-rc.d"), 0o755); err != nil {
		return err
	}
	debs, err := filepath.Glob(filepath.Join(b.work, "cache", "archives", "*.deb"))
	if err != nil || len(debs) == 0 {
		return fmt.Errorf("no packages downloaded to %s: %v", b.work, err)
	}
	cached := filepath.Join(root, "var/cache/apt/archives")
	for _, deb := range debs {
		if err := extractDeb(deb, root); err != nil {
			return err
		}
		if err := os.Link(deb, filepath.Join(cached, filepath.Base(deb))); err != nil {
			return err
		}
	}
	cmd := exec.Command("unshare", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c", chrootInstall, "sh", root)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive", "DEBCONF_NONINTERACTIVE_SEEN=true"}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg --install in %s: %w\n%s", root, err, out)
	}
	// What the build used and an image does not hold.
	for _, p := range []string{"usr/sbin/policy-rc.d", "dev/null", "var/cache/apt/archives",
		"var/cache/debconf/templates.dat-old", "run/adduser"} {
		if err := os.RemoveAll(filepath.Join(root, p)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(cached, 0o755); err != nil {
		return err
	}
	// Files the first dpkg-deb -x left that dpkg's excludes drop.
	for _, p := range debianSlim {
		matches, _ := filepath.Glob(filepath.Join(root, p))
		for _, m := range matches {
			if strings.HasPrefix(m, filepath.Join(root, "usr/share/doc")) {
				if err := keepCopyright(m); err != nil {
					return err
				}
				continue
			}
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// keepCopyright removes everything in a package's doc directory but its
// copyright file.
func keepCopyright(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if e.Name() == "copyright" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// extractDeb unpacks a package's files into root without running
// anything of it, following root's directory symlinks (merged /usr).
func extractDeb(deb, root string) error {
	fsys := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	untar := exec.Command("tar", "-x", "-C", root, "--keep-directory-symlink")
	pipe, err := fsys.StdoutPipe()
	if err != nil {
		return err
	}
	untar.Stdin = pipe
	var errb bytes.Buffer
	fsys.Stderr, untar.Stderr = &errb, &errb
	if err := fsys.Start(); err != nil {
		return err
	}
	uerr := untar.Run()
	ferr := fsys.Wait()
	if err := errors.Join(ferr, uerr); err != nil {
		return fmt.Errorf("unpack %s: %w\n%s", filepath.Base(deb), err, errb.String())
	}
	return nil
}

// runTool runs a command, with its output in the error.
func runTool(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

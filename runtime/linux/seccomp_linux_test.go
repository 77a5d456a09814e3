package linux

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// busyboxScript runs under the default filter what a shell-based image
// does: files, pipes, archives, processes, signals, time, scheduling,
// personality, sockets over loopback, netlink, a raw ICMP socket, chroot. -x traces each command to stderr,
// so a failure names the last one.
const busyboxScript = `set -eux
/bin/busybox mkdir -p /tmp
/bin/busybox --install -s /bin
export PATH=/bin
cd /tmp
echo hello > a; cp a b; mv b c; ln -s c d; cat d | grep -q hello
stat c >/dev/null; touch -d '2020-01-01 00:00' c; chmod 600 c; chown 1:1 c; ls -la >/dev/null
mkdir -p x/y; find . -name c | grep -q c; du -s . >/dev/null; rm -r x
seq 1 1000 | sort -rn | head -1 | grep -qx 1000
echo abc | sed s/b/X/ | awk '{print toupper($0)}' | grep -qx AXC
tar cf t.tar a c; gzip t.tar; gunzip -c t.tar.gz | tar tf - | grep -qx c
dd if=/dev/zero of=z bs=1k count=64 2>/dev/null; md5sum z >/dev/null; sha256sum z >/dev/null
date >/dev/null; sleep 0.1; uname -a >/dev/null; test "$(id -u)" = 0; hostname >/dev/null
ps >/dev/null; top -bn1 >/dev/null; df / >/dev/null; free >/dev/null; uptime >/dev/null
renice -n 1 $$ >/dev/null; ionice -c 3 true; taskset -p $$ >/dev/null; setsid true
chroot / /bin/true; timeout 5 sleep 0.1; linux32 uname -m >/dev/null; nproc >/dev/null
fallocate -l 4096 fa; truncate -s 1 fa; sync; bzip2 -k z; bzcat z.bz2 | cmp - z; ip addr >/dev/null
mkfifo f; (echo piped > f &); read l < f; test "$l" = piped
sleep 30 & kill $!; wait $! || test $? = 143
sh -c 'exit 3' || test $? = 3
httpd -p 127.0.0.1:8080 -h /tmp; wget -q -O - http://127.0.0.1:8080/a | grep -qx hello
ping -c 1 -W 2 127.0.0.1 >/dev/null
echo all-ok
`

// TestBusyboxUnderFilter runs a static glibc program, Debian's
// busybox-static, through many of its applets in a confined container.
func TestBusyboxUnderFilter(t *testing.T) {
	testutil.RequireTools(t, "busybox")
	rt, _ := newRuntime(t)
	t.Parallel()
	img := testImage(t)
	bb, _ := exec.LookPath("busybox")
	if err := os.MkdirAll(filepath.Join(img, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(bb, filepath.Join(img, "bin", "busybox")); err != nil {
		t.Fatal(err)
	}
	stderr := &testutil.SyncBuffer{}
	c, out := start(t, rt, Spec{Image: img, Args: []string{"/bin/busybox", "sh", "-c", busyboxScript}, Stderr: stderr})
	ex := c.Wait()
	if ex.Code != 0 || !strings.Contains(out.String(), "all-ok") {
		t.Fatalf("exit %+v, stdout %q\nstderr (last command is the one that failed):\n%s", ex, out.String(), stderr.String())
	}
}

package e2e

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// A hostile PID 1 races for the executable of every process it can see
// that does not run from its own root filesystem: the exec helpers of
// exec health checks and `shoal exec`, and the host binary started as the
// interpreter of a `#!/proc/self/exe` script. It keeps what it catches
// and tries to write to it, also after `shoal up` stopped (the binary is
// then run by no process, and containers outlive the daemon). The binary
// must come out unchanged, and no host descriptor of a helper reachable.
func TestContainerCannotReachTheHostBinary(t *testing.T) {
	t.Parallel()
	n := newNode(t, "e2e-escape")
	// A binary of its own: were the race won, it would be this copy that
	// is overwritten, not the one the other tests run.
	n.bin = copyFile(t, shoalBin(t), filepath.Join(t.TempDir(), "shoal"))
	before := fileHash(t, n.bin)
	n.start()
	n.must("image", "import", testutil.TestProgImage(t, "testprog:1"))
	n.must("apply", "-f", n.writeFile("race.yaml", `name: race
image: testprog:1
command: ["/app", "-race-exe", "16s", "-sleep", "1h"]
health: {exec: ["/app", "-exit", "0"], interval: 200ms, timeout: 2s, retries: 3}
`))
	waitInstance(t, n, running)
	logPath := filepath.Join(n.dataDir, "logs", "race", "0.log")
	// Exec helpers and the script's interpreter, again and again.
	until := time.Now().Add(6 * time.Second)
	for time.Now().Before(until) {
		n.shoal("exec", "race", "--", "/race.sh")
		n.shoal("exec", "race", "--", "/app", "-exit", "0")
	}
	// No process runs the binary any more: a handle caught to it could
	// now be opened for writing.
	n.stop()
	var log string
	testutil.WaitFor(t, 40*time.Second, func() error {
		b, err := os.ReadFile(logPath)
		if err != nil {
			return err
		}
		log = string(b)
		if !strings.Contains(log, "race: handles=") {
			return fmt.Errorf("the race has not ended yet:\n%s", log)
		}
		return nil
	})
	t.Logf("the container's account:\n%s", log)
	if after := fileHash(t, n.bin); after != before {
		t.Errorf("the host's shoal binary changed: sha256 %s, was %s", after, before)
	}
	sum := regexp.MustCompile(`race: handles=(\d+) writable=(\d+) hostfds=(\d+)`).FindStringSubmatch(log)
	if sum == nil {
		t.Fatalf("no summary in the container's output:\n%s", log)
	}
	if sum[2] != "0" {
		t.Errorf("the container wrote to %s executable(s) it caught", sum[2])
	}
	if sum[3] != "0" {
		t.Errorf("the container saw %s descriptor(s) of host processes", sum[3])
	}
	// The script's interpreter is caught every time it runs: what the
	// container holds is then the sealed copy. Without any catch the race
	// proved nothing.
	if sum[1] == "0" {
		t.Errorf("the container caught no executable at all: the race did not run")
	}
	// Clean up through a node of the unchanged binary.
	n.start()
}

func copyFile(t *testing.T, src, dst string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

func fileHash(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// procStatusKB reads a "VmRSS"-like field of /proc/PID/status, in KiB.
func procStatusKB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the daemon's status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("%s in /proc/%d/status: %q", field, pid, l)
			}
			return kb
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// An exec health check that prints without end cannot grow the daemon:
// the check's output keeps its first bytes, the rest is counted and
// dropped, and ps says how much.
func TestHealthCheckEndlessOutput(t *testing.T) {
	const flood = 15 * time.Second
	const maxRSS = 150 << 10 // KiB
	n := newNode(t, "e2e-health-flood")
	n.start()
	n.must("image", "import", testutil.TestProgImage(t, "testprog:1"))
	n.must("apply", "-f", n.writeFile("flood.yaml", `name: flood
image: testprog:1
command: ["/app", "-sleep", "1h"]
restart: never
health: {exec: ["/app", "-yes"], interval: 100ms, timeout: 3s, retries: 1}
`))
	pid := n.cmd.Process.Pid
	var health string
	start := time.Now()
	testutil.WaitFor(t, flood+30*time.Second, func() error {
		var ps []struct {
			State  string `json:"state"`
			Health string `json:"health"`
		}
		if err := n.json(&ps, "ps", "-o", "json"); err != nil {
			return err
		}
		if rss := procStatusKB(t, pid, "VmRSS"); rss > maxRSS {
			t.Fatalf("the daemon's RSS is %d MiB after %s of an endless health check; want under %d MiB", rss>>10, time.Since(start).Round(time.Second), maxRSS>>10)
		}
		if len(ps) != 1 || ps[0].State != "unhealthy" {
			return fmt.Errorf("ps: %+v; want one unhealthy instance", ps)
		}
		health = ps[0].Health
		if time.Since(start) < flood {
			return fmt.Errorf("flooding for %s yet", flood)
		}
		return nil
	})
	if peak := procStatusKB(t, pid, "VmHWM"); peak > maxRSS {
		t.Errorf("the daemon's peak RSS was %d MiB; want under %d MiB", peak>>10, maxRSS>>10)
	} else {
		t.Logf("daemon RSS %d MiB, peak %d MiB, after %s of an endless health check", procStatusKB(t, pid, "VmRSS")>>10, peak>>10, time.Since(start).Round(time.Second))
	}
	m := regexp.MustCompile(`^health check timed out after 3s: exec /app: .*: y\ny\n(y\n)*y? \.\.\. \[([0-9]+) bytes dropped\]$`).FindStringSubmatch(health)
	if m == nil {
		t.Fatalf("ps shows health %.300q...; want the first lines of output and the bytes dropped", health)
	}
	if dropped, _ := strconv.ParseInt(m[2], 10, 64); dropped < 1<<20 {
		t.Errorf("health output says %d bytes dropped; want the megabytes the check printed", dropped)
	}
	if len(health) > 2048 {
		t.Errorf("health output is %d bytes; want it bounded", len(health))
	}
}

// flagValue is the value of flag in a node's arguments.
func (n *node) flagValue(flag string) string {
	for i, a := range n.args {
		if a == flag && i+1 < len(n.args) {
			return n.args[i+1]
		}
	}
	n.t.Fatalf("no %s in %v", flag, n.args)
	return ""
}

// udpRxQueue is how many bytes wait in the receive queue of the UDP socket
// bound to port on 127.0.0.1 (/proc/net/udp).
func udpRxQueue(port string) (int64, error) {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0, err
	}
	p, _ := strconv.Atoi(port)
	local := fmt.Sprintf("0100007F:%04X", p)
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) > 4 && f[1] == local {
			_, rx, _ := strings.Cut(f[4], ":")
			return strconv.ParseInt(rx, 16, 64)
		}
	}
	return 0, fmt.Errorf("no UDP socket on 127.0.0.1:%s", port)
}

// Strangers on the cluster and gossip ports: idle connections do not keep
// the remote CLI out, and garbage packets write a bounded number of log
// lines, not one each.
func TestStrangersOnThePorts(t *testing.T) {
	n := newNode(t, "e2e-strangers")
	n.start()
	port, gossip := n.flagValue("--port"), n.flagValue("--gossip-port")
	clusterAddr := net.JoinHostPort("127.0.0.1", port)

	// 200 idle connections from one address (127.0.0.2), then the remote
	// CLI from another (127.0.0.1).
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	for i := range 200 {
		c, err := d.Dial("tcp", clusterAddr)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		defer c.Close()
	}
	cred := filepath.Join(n.dataDir, "tls", "admin.credential")
	began := time.Now()
	out, errOut, code := n.shoal("--server", clusterAddr, "--credential", cred, "status")
	if took := time.Since(began); code != 0 || took > 5*time.Second {
		t.Fatalf("remote status beside 200 idle connections: exit %d after %s\nstdout: %s\nstderr: %s", code, took.Round(time.Millisecond), out, errOut)
	}

	// 5000 UDP packets and 500 TCP streams of garbage to the gossip port.
	// The UDP ones are paced by the socket's queue, so that every packet
	// reaches memberlist instead of being dropped by the kernel.
	uc, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", gossip))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	garbage := []byte("\x01not a gossip packet under the cluster's key, just noise")
	for i := range 5000 {
		if _, err := uc.Write(garbage); err != nil {
			t.Fatalf("garbage packet %d: %v", i, err)
		}
		if i%100 == 99 {
			testutil.WaitFor(t, 10*time.Second, func() error {
				if q, err := udpRxQueue(gossip); err != nil || q > 0 {
					return fmt.Errorf("gossip socket's queue: %d bytes, %v", q, err)
				}
				return nil
			})
		}
	}
	for i := range 500 {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", gossip), 5*time.Second)
		if err != nil {
			t.Fatalf("garbage stream %d: %v", i, err)
		}
		c.Write(garbage)
		c.Close()
	}
	// Stopping writes the counts of what was suppressed; the log is then
	// safe to read.
	n.stop()
	log := n.log.String()
	var loud []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			loud = append(loud, l)
		}
	}
	t.Logf("%d WARN/ERROR lines for 5000 bad packets, 500 bad streams and 200 idle connections:\n%s", len(loud), strings.Join(loud, "\n"))
	if len(loud) > 60 {
		t.Errorf("%d WARN/ERROR lines; want a bounded few. The first:\n%s", len(loud), strings.Join(loud[:60], "\n"))
	}
	if !strings.Contains(log, "more suppressed") {
		t.Errorf("the log does not count the suppressed lines:\n%s", strings.Join(loud, "\n"))
	}
}

// stalled starts a CLI command whose stdout nobody reads: the daemon must
// wait for the client (back-pressure), not hold what it would have sent.
func (n *node) stalled(args ...string) *exec.Cmd {
	n.t.Helper()
	cmd := exec.Command(n.bin, append([]string{"--data-dir", n.dataDir}, args...)...)
	r, w, err := os.Pipe()
	if err != nil {
		n.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	w.Close()
	n.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		r.Close()
	})
	return cmd
}

// Clients that stop reading — logs of a full log, exec and run of
// commands that print without end — hold their streams back; the daemon's
// memory stays flat.
func TestStalledClientsDoNotGrowTheDaemon(t *testing.T) {
	const maxRSS = 150 << 10 // KiB
	n := newNode(t, "e2e-stalled")
	n.start()
	n.must("image", "import", testutil.TestProgImage(t, "testprog:1"))
	n.must("apply", "-f", n.writeFile("quiet.yaml", "name: quiet\nimage: testprog:1\ncommand: [\"/app\", \"-sleep\", \"1h\"]\n"))
	testutil.WaitFor(t, 30*time.Second, func() error {
		if ps := n.ps(); len(ps) != 1 || ps[0].State != "running" {
			return fmt.Errorf("ps: %+v; want quiet running", ps)
		}
		return nil
	})
	// A full log: three rotated files of 10 MiB.
	dir := filepath.Join(n.dataDir, "logs", "quiet")
	line := strings.Repeat("x", 1023) + "\n"
	for _, name := range []string{"0.log.2", "0.log.1", "0.log"} {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(strings.Repeat(line, 10<<10)); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	pid := n.cmd.Process.Pid
	before := procStatusKB(t, pid, "VmRSS")
	var cmds []*exec.Cmd
	for range 10 {
		cmds = append(cmds, n.stalled("logs", "quiet/0"))
	}
	cmds = append(cmds, n.stalled("exec", "quiet/0", "--", "/app", "-yes"))
	cmds = append(cmds, n.stalled("run", "testprog:1", "--", "/app", "-yes"))
	// Long enough for every stream to fill the pipes and sockets on its way
	// and stop; a daemon that buffered would have read all it could.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); <-tick.C {
		if rss := procStatusKB(t, pid, "VmRSS"); rss > maxRSS {
			t.Fatalf("the daemon's RSS is %d MiB with stalled clients (%d MiB before); want under %d MiB", rss>>10, before>>10, maxRSS>>10)
		}
		for _, c := range cmds {
			if c.ProcessState != nil {
				t.Fatalf("%v ended: %v", c.Args, c.ProcessState)
			}
		}
	}
	t.Logf("daemon RSS %d MiB before, %d MiB with 12 stalled clients (peak %d MiB)", before>>10, procStatusKB(t, pid, "VmRSS")>>10, procStatusKB(t, pid, "VmHWM")>>10)
}

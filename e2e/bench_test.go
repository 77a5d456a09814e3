package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/api/client"
)

// BenchmarkBootstrapToLeader measures `shoal up` on an empty data dir until
// its API reports a leader and a cluster id: process start, state file,
// Raft bootstrap and election.
func BenchmarkBootstrapToLeader(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	bin := shoalBin(b)
	var total time.Duration
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		gp, p := 20000+2*(i%500), 20001+2*(i%500)
		cmd := exec.Command(bin, "--data-dir", dir, "up", "--name", "bench", "--bind", "127.0.0.1",
			"--gossip-port", fmt.Sprint(gp), "--port", fmt.Sprint(p))
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		c := client.New(filepath.Join(dir, "shoal.sock"))
		deadline := start.Add(10 * time.Second)
		for {
			st, err := c.Status(context.Background())
			if err == nil && st.Leader != "" && st.ClusterID != "" {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				b.Fatalf("no leader after 10s: %v", err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		total += time.Since(start)
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/bootstrap")
}

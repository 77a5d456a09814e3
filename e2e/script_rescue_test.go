package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// rescueScriptNode removes what a script's apps left running when the
// script stopped before `shoal rm` (a failed check): containers outlive
// `shoal up`, so the node comes back on the script's data dir and ports
// to remove its apps, then stops again.
func rescueScriptNode(bin, dataDir string, upArgs ...string) (err error) {
	env := append(os.Environ(), "SHOAL_DATA_DIR="+dataDir)
	up := exec.Command(bin, append([]string{"up"}, upArgs...)...)
	up.Env = env
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := up.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- up.Wait() }()
	defer func() {
		up.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			up.Process.Kill()
			<-done
			err = errors.Join(err, errors.New("shoal up did not exit within 30s of SIGTERM"))
		}
	}()
	shoal := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		return cmd.Output()
	}
	var ps []instance
	if err := testutil.Poll(30*time.Second, func() error {
		out, err := shoal("ps", "-o", "json")
		if err != nil {
			return fmt.Errorf("ps: %w", err)
		}
		return json.Unmarshal(out, &ps)
	}); err != nil {
		return err
	}
	for _, i := range ps {
		shoal("rm", i.App)
	}
	return testutil.Poll(30*time.Second, func() error {
		if m := monitorsOf(dataDir, false); len(m) > 0 {
			return fmt.Errorf("monitors still running: %v", m)
		}
		return nil
	})
}

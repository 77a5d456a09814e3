package agent

import (
	"testing"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/runtime/supervise"
)

func TestRestartOf(t *testing.T) {
	for _, tc := range []struct {
		app  api.RestartPolicy
		want supervise.Restart
	}{
		{api.RestartAlways, supervise.Always},
		{api.RestartOnFailure, supervise.OnFailure},
		{api.RestartNever, supervise.Never},
	} {
		got := restartOf(tc.app)
		if got != tc.want {
			t.Errorf("restartOf(%q) = %q, want %q", tc.app, got, tc.want)
		}
		if err := (supervise.Policy{Restart: got}).Validate(); err != nil {
			t.Errorf("restartOf(%q): %v", tc.app, err)
		}
	}
	if err := (supervise.Policy{Restart: restartOf("sometimes")}).Validate(); err == nil {
		t.Error("an unknown restart policy reached the loop as a valid one")
	}
}

func TestStateOf(t *testing.T) {
	for _, tc := range []struct {
		ev   supervise.State
		want api.InstanceState
	}{
		{supervise.Starting, api.StateStarting},
		{supervise.Running, api.StateRunning},
		{supervise.Exited, api.StateExited},
		{supervise.Failed, api.StateFailed},
	} {
		if got := stateOf(tc.ev); got != tc.want {
			t.Errorf("stateOf(%q) = %q, want %q", tc.ev, got, tc.want)
		}
	}
}

package agent

import (
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/runtime/supervise"
)

// The runtime has its own words for what the app spec says (it knows
// nothing of api); these turn one into the other.

// restartOf is the supervision loop's restart policy for an app's.
func restartOf(p api.RestartPolicy) supervise.Restart {
	switch p {
	case api.RestartAlways:
		return supervise.Always
	case api.RestartOnFailure:
		return supervise.OnFailure
	case api.RestartNever:
		return supervise.Never
	}
	// The API refuses any other; supervise.Run refuses it alike.
	return supervise.Restart(p)
}

// stateOf is the instance state a supervision event reports.
func stateOf(s supervise.State) api.InstanceState {
	switch s {
	case supervise.Starting:
		return api.StateStarting
	case supervise.Running:
		return api.StateRunning
	case supervise.Exited:
		return api.StateExited
	case supervise.Failed:
		return api.StateFailed
	}
	return api.InstanceState(s)
}

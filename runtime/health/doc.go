// Package health owns container health checks: what a check is (an HTTP GET,
// a TCP connect or a command run in the container, with interval, timeout,
// retries and start period), probing it once, the pure decision that turns
// probe results into a health state, and the loop that probes on an
// interval and reports every change of state.
//
// # Basics
//
// A Check describes exactly one probe; Validate it where it is declared.
// Probe runs it once against a Target: the container's network namespace
// (for HTTP and TCP) and the runtime's exec function (for Exec). Decide is
// the state machine, a pure function of the previous State, the Result and
// the time since the container started. Run ties them together: it reports
// "starting" at once, then waits Interval, probes, decides and reports each
// change through its callback until its context ends.
//
// The package only reports. Restarting an unhealthy container is the
// caller's business (its restart policy); a restarted container gets a new
// Run, and with it a new start period.
//
// # States
//
//	starting  --success-->            healthy
//	starting  --Retries failures-->   unhealthy   (failures inside StartPeriod do not count)
//	healthy   --Retries failures-->   unhealthy
//	unhealthy --success-->            healthy
//
// # Caveats
//
// HTTP and TCP probes of a container in its own network namespace dial from
// inside it: a goroutine locks its OS thread, enters the namespace with
// setns(2), creates the socket and exits without unlocking, so the Go runtime
// throws the thread away rather than reuse it in the wrong namespace. Only
// the socket lives in the container's namespace; name resolution does not,
// so such probes take an IP address or "localhost", not a host name.
//
// A node saturated with work (Target.Busy, or Run's own timers firing
// late) cannot tell a slow container from a slow node: Run then skips
// probes, and does not count failures, so that a healthy container is
// not restarted for the node's load.
//
// Exec probes are as good as the Target's Exec function: it must return
// when its context is done, or the probe's Timeout cannot be honoured.
package health

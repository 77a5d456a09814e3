package health

import "errors"

var (
	// ErrInvalidCheck wraps every error of Check.Validate.
	ErrInvalidCheck = errors.New("invalid health check")
	// ErrExecUnsupported is the probe error of an Exec check against a
	// Target without an Exec function.
	ErrExecUnsupported = errors.New("exec health checks are not supported by this runtime")
	// ErrTimeout wraps the probe error of a check that ran out of its
	// Timeout.
	ErrTimeout = errors.New("health check timed out")
)

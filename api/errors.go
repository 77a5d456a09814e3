package api

import (
	"errors"
	"fmt"
)

// Sentinel errors the CLI and the daemon branch on with errors.Is.
var (
	ErrNotFound  = errors.New("not found")
	ErrNoLeader  = errors.New("no cluster leader: writes need a leader; check `shoal status` and that a majority of voters can reach each other")
	ErrInvalid   = errors.New("invalid request")
	ErrConflict  = errors.New("conflict")
	ErrImageUsed = errors.New("image in use")
)

// FieldError says which field of an app spec is wrong and why.
type FieldError struct {
	Field string // dotted path, e.g. "resources.memory"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Error kinds on the wire, so a client can branch without comparing strings.
const (
	KindNotFound = "not_found"
	KindNoLeader = "no_leader"
	KindInvalid  = "invalid"
	KindConflict = "conflict"
	KindInternal = "internal"
)

// WireError is an error as the API sends it.
type WireError struct {
	Kind    string `json:"kind"`
	Message string `json:"error"`
}

func (e *WireError) Error() string { return e.Message }

// Is maps a wire error back to its sentinel.
func (e *WireError) Is(target error) bool {
	switch e.Kind {
	case KindNotFound:
		return target == ErrNotFound
	case KindNoLeader:
		return target == ErrNoLeader
	case KindInvalid:
		return target == ErrInvalid
	case KindConflict:
		return target == ErrConflict || target == ErrImageUsed
	}
	return false
}

// KindOf classifies an error for the wire.
func KindOf(err error) string {
	switch {
	case errors.Is(err, ErrNotFound):
		return KindNotFound
	case errors.Is(err, ErrNoLeader):
		return KindNoLeader
	case errors.Is(err, ErrInvalid):
		return KindInvalid
	case errors.Is(err, ErrConflict), errors.Is(err, ErrImageUsed):
		return KindConflict
	}
	return KindInternal
}

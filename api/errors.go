package api

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors the CLI and the daemon branch on with errors.Is.
var (
	ErrNotFound  = errors.New("not found")
	ErrNoLeader  = errors.New("no cluster leader: writes need a leader; check `shoal status` and that a majority of voters can reach each other")
	ErrInvalid   = errors.New("invalid request")
	ErrConflict  = errors.New("conflict")
	ErrImageUsed = errors.New("image in use")
	// ErrForbidden: the caller may not do this here (see NotVoterError).
	ErrForbidden = errors.New("forbidden")
	// ErrUnreachable: the node that holds what was asked for (an
	// instance's logs, its exec) does not answer: it is down or cut off.
	ErrUnreachable = errors.New("unreachable")
	// ErrNoSpace: a node's disk is too full for the request.
	ErrNoSpace = errors.New("no space left on the disk")
	// ErrRemoved: the calling node is no longer in the cluster (it left,
	// or was forgotten); it never will be again under its identity.
	ErrRemoved = errors.New("removed from the cluster")
)

// NotVoterError refuses, on a non-voter, what only the admin credential or
// a voter may do: change the cluster, or reach another node's instances.
// A non-voter is an untrusted device; it cannot pass such a request on,
// because the voters do not take it from a non-voter's certificate.
// Voters are the voters' cluster-port addresses (HOST:PORT), the leader
// first: where a client with the admin credential takes the request.
type NotVoterError struct {
	Node   string
	Voters []string
}

func (e *NotVoterError) Error() string {
	voters := strings.Join(e.Voters, ", ")
	if voters == "" {
		voters = "none known to this node yet"
	}
	return fmt.Sprintf("node %s is a non-voter, which may not change the cluster or reach other nodes' instances: "+
		"run the command with the admin credential (--credential FILE or SHOAL_CREDENTIAL; the bootstrap node keeps it in DATA/tls/admin.credential), "+
		"and the CLI takes it to a voter (%s)", e.Node, voters)
}

func (e *NotVoterError) Is(target error) bool { return target == ErrForbidden }

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
	KindNotFound    = "not_found"
	KindNoLeader    = "no_leader"
	KindInvalid     = "invalid"
	KindConflict    = "conflict"
	KindForbidden   = "forbidden"
	KindUnreachable = "unreachable"
	KindNoSpace     = "no_space"
	KindRemoved     = "removed"
	KindInternal    = "internal"
)

// WireError is an error as the API sends it.
type WireError struct {
	Kind    string `json:"kind"`
	Message string `json:"error"`
	// Voters: where the request can go instead (a NotVoterError's).
	Voters []string `json:"voters,omitempty"`
}

// Wire is err as the API sends it.
func Wire(err error) *WireError {
	we := &WireError{Kind: KindOf(err), Message: err.Error()}
	var nv *NotVoterError
	if errors.As(err, &nv) {
		we.Voters = nv.Voters
	}
	return we
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
	case KindForbidden:
		return target == ErrForbidden
	case KindUnreachable:
		return target == ErrUnreachable
	case KindNoSpace:
		return target == ErrNoSpace
	case KindRemoved:
		return target == ErrRemoved
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
	case errors.Is(err, ErrForbidden):
		return KindForbidden
	case errors.Is(err, ErrUnreachable):
		return KindUnreachable
	case errors.Is(err, ErrNoSpace):
		return KindNoSpace
	case errors.Is(err, ErrRemoved):
		return KindRemoved
	}
	return KindInternal
}

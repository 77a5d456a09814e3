package client

import (
	"errors"
	"fmt"
	"net"

	"github.com/shoal-edge/shoal/api"
)

// redirect handles a node's refusal we: when the node is a non-voter that
// named the voters (api.NotVoterError) and c holds the admin credential,
// the request goes to the voters in turn (the leader first) until one
// answers, the answering voter's answer being final; otherwise the
// refusal stands. rewind, if not nil, readies the request body to be
// sent again.
func redirect[T any](c *Client, we *api.WireError, rewind func() error, call func(voter *Client) (T, error)) (T, error) {
	var zero T
	if we.Kind != api.KindForbidden || len(we.Voters) == 0 || c.credential == nil {
		return zero, we
	}
	cfg, err := c.credential()
	if err != nil {
		return zero, fmt.Errorf("%s; and --credential: %w", we.Message, err)
	}
	var errs []error
	for _, addr := range we.Voters {
		if rewind != nil {
			if err := rewind(); err != nil {
				return zero, fmt.Errorf("%s; and send again: %w", we.Message, err)
			}
		}
		voter := newRemote(addr, cfg) // never redirects again
		v, err := call(voter)
		var oe *net.OpError
		if err != nil && errors.As(err, &oe) && oe.Op == "dial" {
			errs = append(errs, err) // nothing was sent: try the next voter
			continue
		}
		return v, err
	}
	return zero, fmt.Errorf("%s; and no voter could be reached: %w", we.Message, errors.Join(errs...))
}

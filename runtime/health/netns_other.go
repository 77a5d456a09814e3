//go:build !linux

package health

import (
	"context"
	"errors"
	"net"
)

func dialInNetNS(ctx context.Context, path, network, addr string) (net.Conn, error) {
	return nil, errors.New("health checks in a network namespace need Linux")
}

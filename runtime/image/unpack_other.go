//go:build !linux

package image

import (
	"context"
	"errors"
	"io"
	"log/slog"
)

// applyLayer needs Linux: ownership, modes and safe path handling are
// implemented with Linux system calls only.
func applyLayer(ctx context.Context, root, layer string, r io.Reader, b *budget, log *slog.Logger) error {
	return errors.New("unpack layer " + layer + ": only supported on linux")
}

func syncFS(string) error { return nil }

// freeSpace is unknown off Linux: no free-space check is made.
func freeSpace(string) (int64, bool) { return 0, false }

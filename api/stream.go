package api

import (
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
)

// Frame kinds of a multiplexed output stream (`shoal run`): stdout and
// stderr chunks, then exactly one exit or error frame.
//
// `shoal exec` adds frames from the client: stdin chunks, the end of stdin
// and terminal size changes.
const (
	FrameStdout   byte = 1
	FrameStderr   byte = 2
	FrameExit     byte = 3
	FrameError    byte = 4
	FrameStdin    byte = 5
	FrameStdinEOF byte = 6
	FrameResize   byte = 7 // 4 bytes: rows, cols as big-endian uint16
)

// maxFrame bounds a frame so a broken peer cannot make us allocate much.
const maxFrame = 1 << 20

// WriteFrame writes one frame: kind, big-endian uint32 length, data.
func WriteFrame(w io.Writer, kind byte, data []byte) error {
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(data)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// ReadFrames copies stdout and stderr frames to the writers and returns the
// exit code of the exit frame, or the error of an error frame.
func ReadFrames(r io.Reader, stdout, stderr io.Writer) (int, error) {
	buf := make([]byte, 32<<10)
	for {
		kind, data, err := ReadFrame(r, buf)
		if err != nil {
			return -1, fmt.Errorf("output stream ended early: %w", err)
		}
		switch kind {
		case FrameStdout:
			stdout.Write(data)
		case FrameStderr:
			stderr.Write(data)
		case FrameExit:
			code, err := strconv.Atoi(string(data))
			if err != nil {
				return -1, fmt.Errorf("output stream: bad exit code %q", data)
			}
			return code, nil
		case FrameError:
			return -1, &WireError{Kind: KindInternal, Message: string(data)}
		default:
			return -1, fmt.Errorf("output stream: unknown frame kind %d", kind)
		}
	}
}

// ReadFrame reads one frame; data is valid until the next call with buf.
func ReadFrame(r io.Reader, buf []byte) (kind byte, data []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("stream: frame of %d bytes", n)
	}
	if int(n) > cap(buf) {
		buf = make([]byte, n)
	}
	data = buf[:n]
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, nil, fmt.Errorf("stream ended early: %w", err)
	}
	return hdr[0], data, nil
}

// ResizeFrame encodes a terminal size.
func ResizeFrame(rows, cols uint16) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b, rows)
	binary.BigEndian.PutUint16(b[2:], cols)
	return b
}

// ParseResize decodes a terminal size.
func ParseResize(b []byte) (rows, cols uint16, ok bool) {
	if len(b) != 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:]), true
}

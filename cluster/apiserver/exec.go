package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/shoal-edge/shoal/api"
)

// Execer runs commands inside running instances.
type Execer interface {
	Exec(ctx context.Context, req api.ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan api.TermSize) (int, error)
}

// exec upgrades the connection to a two-way frame stream: stdin and
// resizes from the client, output and the exit code to it.
func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	var req api.ExecRequest
	if err := json.Unmarshal([]byte(r.URL.Query().Get("req")), &req); err != nil {
		s.fail(w, r, fmt.Errorf("%w: decode exec request: %v", api.ErrInvalid, err))
		return
	}
	if len(req.Command) == 0 {
		s.fail(w, r, fmt.Errorf("%w: exec: no command", api.ErrInvalid))
		return
	}
	if s.elsewhere(w, r, req.App, strconv.Itoa(req.Index)) {
		return
	}
	if s.cfg.Exec == nil {
		s.fail(w, r, fmt.Errorf("%w: exec is not available on this node", api.ErrInvalid))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		s.fail(w, r, fmt.Errorf("exec: connection cannot be upgraded"))
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: shoal-exec\r\nConnection: Upgrade\r\n\r\n")
	brw.Flush()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fw := &frameWriter{w: conn}
	stdinR, stdinW := io.Pipe()
	resize := make(chan api.TermSize, 4)
	if req.TTY && req.Rows > 0 {
		resize <- api.TermSize{Rows: req.Rows, Cols: req.Cols}
	}
	go readClientFrames(brw.Reader, stdinW, resize, cancel)
	var stdin io.Reader
	if req.HasStdin {
		stdin = stdinR
	}
	code, err := s.cfg.Exec.Exec(ctx, req, stdin, fw.stream(api.FrameStdout), fw.stream(api.FrameStderr), resize)
	if err != nil {
		fw.write(api.FrameError, []byte(err.Error()))
		return
	}
	fw.write(api.FrameExit, []byte(strconv.Itoa(code)))
}

// readClientFrames feeds stdin and resizes; the client hanging up cancels
// the exec.
func readClientFrames(r *bufio.Reader, stdin *io.PipeWriter, resize chan<- api.TermSize, cancel context.CancelFunc) {
	buf := make([]byte, 32<<10)
	for {
		kind, data, err := api.ReadFrame(r, buf)
		if err != nil {
			stdin.CloseWithError(io.EOF)
			cancel()
			return
		}
		switch kind {
		case api.FrameStdin:
			if _, err := stdin.Write(data); err != nil {
				continue // the command closed its stdin; keep reading resizes
			}
		case api.FrameStdinEOF:
			stdin.Close()
		case api.FrameResize:
			if rows, cols, ok := api.ParseResize(data); ok {
				select {
				case resize <- api.TermSize{Rows: rows, Cols: cols}:
				default:
				}
			}
		}
	}
}

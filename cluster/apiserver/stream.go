package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/runtime/logs"
)

// logs streams an instance's log file: the last `tail` lines, then, with
// follow=1, whatever is appended until the client goes away; since (RFC
// 3339) drops the lines written before, timestamps=1 starts each line with
// the time it was written.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	if s.elsewhere(w, r, r.PathValue("app"), r.PathValue("index")) {
		return
	}
	index, err := strconv.Atoi(r.PathValue("index"))
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: instance index %q is not a number", api.ErrInvalid, r.PathValue("index")))
		return
	}
	tail, err := atoiParam(r, "tail", -1)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var opts logs.FilterOptions
	opts.Timestamps = r.URL.Query().Get("timestamps") == "1"
	if since := r.URL.Query().Get("since"); since != "" {
		if opts.Since, err = time.Parse(time.RFC3339Nano, since); err != nil {
			s.fail(w, r, fmt.Errorf("%w: since %q is not an RFC 3339 time", api.ErrInvalid, since))
			return
		}
	}
	path, err := s.cfg.Instances.LogPath(r.Context(), r.PathValue("app"), index)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data, err := logs.Tail(path, tail)
	switch {
	case errors.Is(err, os.ErrNotExist):
		data = io.NopCloser(strings.NewReader(""))
	case err != nil:
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	// Copied, never read whole: a client that reads slowly holds the
	// copy, not the node's memory. Closed before following, so that a
	// rotated file's space is freed when the writer removes it.
	out := &switchWriter{w: w}
	filter := logs.NewFilter(out, opts)
	_, err = io.Copy(filter, data)
	data.Close()
	if err != nil {
		return
	}
	if r.URL.Query().Get("follow") != "1" {
		filter.Flush()
		return
	}
	fw := flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		fw.flush = f.Flush
		f.Flush()
	}
	out.w = fw
	logs.Follow(r.Context(), path, filter)
}

// switchWriter lets the log filter, which may hold the start of a line,
// go on writing when the copy turns from the file's content to following
// it.
type switchWriter struct{ w io.Writer }

func (s *switchWriter) Write(p []byte) (int, error) { return s.w.Write(p) }

// flushWriter sends followed output as it comes.
type flushWriter struct {
	w     io.Writer
	flush func()
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if f.flush != nil {
		f.flush()
	}
	return n, err
}

// run starts a one-off container and streams its output as frames; the
// last frame carries the exit code. With run -i the request comes in the
// query (req) and the body is the container's stdin, read while the
// output goes back.
func (s *Server) run(w http.ResponseWriter, r *http.Request) {
	var req api.RunRequest
	var stdin io.Reader
	src := io.LimitReader(r.Body, maxBody)
	if q := r.URL.Query().Get("req"); q != "" {
		src, stdin = strings.NewReader(q), r.Body
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			s.fail(w, r, fmt.Errorf("run -i: %w", err))
			return
		}
	}
	dec := json.NewDecoder(src)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.fail(w, r, fmt.Errorf("%w: decode run request: %v", api.ErrInvalid, err))
		return
	}
	w.Header().Set("Content-Type", "application/vnd.shoal.stream")
	w.WriteHeader(http.StatusOK)
	fw := &frameWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		fw.flush = f.Flush
	}
	code, err := s.cfg.Instances.RunContainer(r.Context(), req, stdin, fw.stream(api.FrameStdout), fw.stream(api.FrameStderr))
	if err != nil {
		fw.write(api.FrameError, []byte(err.Error()))
		return
	}
	fw.write(api.FrameExit, []byte(strconv.Itoa(code)))
}

// frameWriter serialises frames from the container's two output streams.
type frameWriter struct {
	mu    sync.Mutex
	w     io.Writer
	flush func()
}

func (f *frameWriter) write(kind byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := api.WriteFrame(f.w, kind, p)
	if f.flush != nil {
		f.flush()
	}
	return err
}

type streamWriter struct {
	f    *frameWriter
	kind byte
}

func (f *frameWriter) stream(kind byte) io.Writer { return streamWriter{f, kind} }

func (s streamWriter) Write(p []byte) (int, error) {
	if err := s.f.write(s.kind, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-edge/shoal/api"
)

// logs streams an instance's log file: the last `tail` lines, then, with
// follow=1, whatever is appended until the client goes away.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
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
	path, err := s.cfg.Instances.LogPath(r.Context(), r.PathValue("app"), index)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		// Not started yet: an empty log, which -f then follows.
		f = nil
	} else if err != nil {
		s.fail(w, r, err)
		return
	}
	if f != nil {
		defer f.Close()
		if tail >= 0 {
			if err := seekTail(f, tail); err != nil {
				s.fail(w, r, err)
				return
			}
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	copyOut := func() {
		if f != nil {
			io.Copy(w, f)
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
	copyOut()
	if r.URL.Query().Get("follow") != "1" {
		return
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		if f == nil {
			if f, err = os.Open(path); err != nil {
				f = nil
				continue
			}
			defer f.Close()
		}
		copyOut()
	}
}

// seekTail positions f at the start of its last n lines.
func seekTail(f *os.File, n int) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if n == 0 {
		_, err := f.Seek(size, io.SeekStart)
		return err
	}
	const chunk = 8192
	lines := 0
	pos := size
	buf := make([]byte, chunk)
	for pos > 0 {
		step := int64(chunk)
		if pos < step {
			step = pos
		}
		pos -= step
		if _, err := f.ReadAt(buf[:step], pos); err != nil && err != io.EOF {
			return err
		}
		b := buf[:step]
		for i := len(b) - 1; i >= 0; i-- {
			// A trailing newline ends the last line; it does not start one.
			if b[i] == '\n' && pos+int64(i) != size-1 {
				lines++
				if lines == n {
					_, err := f.Seek(pos+int64(i)+1, io.SeekStart)
					return err
				}
			}
		}
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}

// run starts a one-off container and streams its output as frames; the
// last frame carries the exit code.
func (s *Server) run(w http.ResponseWriter, r *http.Request) {
	var req api.RunRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
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
	code, err := s.cfg.Instances.RunContainer(r.Context(), req, fw.stream(api.FrameStdout), fw.stream(api.FrameStderr))
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

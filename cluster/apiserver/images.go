package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/shoal-edge/shoal/api"
)

// Images is the node's image store.
type Images interface {
	ImportImage(ctx context.Context, r io.Reader) ([]api.Image, error)
	ListImages(ctx context.Context) ([]api.Image, error)
	PullImage(ctx context.Context, req api.PullRequest, progress func(done, total int64)) (api.Image, error)
	// RemoveImages removes all of refs or none.
	RemoveImages(ctx context.Context, refs []string) error
}

func (s *Server) importImage(w http.ResponseWriter, r *http.Request) {
	imgs, err := s.cfg.Images.ImportImage(r.Context(), r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, imgs)
}

func (s *Server) images(w http.ResponseWriter, r *http.Request) {
	imgs, err := s.cfg.Images.ListImages(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, nonNil(imgs))
}

// maxRemoveRefs bounds the refs of one removal.
const maxRemoveRefs = 256

func (s *Server) removeImage(w http.ResponseWriter, r *http.Request) {
	refs := r.URL.Query()["ref"]
	if len(refs) == 0 || len(refs) > maxRemoveRefs {
		s.fail(w, r, fmt.Errorf("%w: name 1 to %d images to remove", api.ErrInvalid, maxRemoveRefs))
		return
	}
	if err := s.cfg.Images.RemoveImages(r.Context(), refs); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// pull streams progress as JSON lines, at most every 100 ms, and ends with
// the image or the error.
func (s *Server) pull(w http.ResponseWriter, r *http.Request) {
	var req api.PullRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&req); err != nil {
		s.fail(w, r, fmt.Errorf("%w: decode pull request: %v", api.ErrInvalid, err))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	emit := func(p api.PullProgress) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(p)
		if flusher != nil {
			flusher.Flush()
		}
	}
	var last time.Time
	img, err := s.cfg.Images.PullImage(r.Context(), req, func(done, total int64) {
		if now := time.Now(); now.Sub(last) >= 100*time.Millisecond || done == total {
			last = now
			emit(api.PullProgress{Done: done, Total: total})
		}
	})
	if err != nil {
		emit(api.PullProgress{Error: err.Error()})
		return
	}
	emit(api.PullProgress{Image: &img})
}

package apiserver

import (
	"context"
	"io"
	"net/http"

	"github.com/shoal-edge/shoal/api"
)

// Backups saves and restores the cluster's desired state.
type Backups interface {
	Backup(ctx context.Context) ([]byte, error)
	Restore(ctx context.Context, r io.Reader) (api.RestoreResult, error)
}

func (s *Server) snapshotRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/snapshot", s.saveSnapshot)
	mux.HandleFunc("POST /v1/snapshot", s.restoreSnapshot)
}

func (s *Server) saveSnapshot(w http.ResponseWriter, r *http.Request) {
	data, err := s.cfg.Backups.Backup(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(data)
}

func (s *Server) restoreSnapshot(w http.ResponseWriter, r *http.Request) {
	res, err := s.cfg.Backups.Restore(r.Context(), http.MaxBytesReader(w, r.Body, 256<<20))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, res)
}

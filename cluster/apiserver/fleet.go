package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/shoal-edge/shoal/api"
)

// Fleet is the cluster's nodes as the API needs them.
type Fleet interface {
	// Status is the cluster's health as this node sees it.
	Status(ctx context.Context) (api.ClusterStatus, error)
	Nodes(ctx context.Context) ([]api.Node, error)
	Label(ctx context.Context, node string, req api.LabelRequest) error
	// Cordon drains a node or lets it take instances again; a drain
	// says which apps it leaves without a node.
	Cordon(ctx context.Context, node string, cordoned bool) (api.CordonResult, error)
	// Forget takes out a node that is gone for good.
	Forget(ctx context.Context, node string) error
}

// Tokens are the cluster's join tokens.
type Tokens interface {
	// Token is the join command's token.
	Token(ctx context.Context) (string, error)
	// RotateToken makes a new join secret and returns its token.
	RotateToken(ctx context.Context) (string, error)
}

// Membership takes this node out of the cluster.
type Membership interface {
	// Leave takes this node out of the cluster and stops its containers.
	Leave(ctx context.Context, req api.LeaveRequest) (api.LeaveResult, error)
}

func (s *Server) fleetRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/nodes", s.nodes)
	mux.HandleFunc("GET /v1/token", s.token)
	mux.HandleFunc("POST /v1/token/rotate", s.rotateToken)
	mux.HandleFunc("POST /v1/nodes/{name}/labels", s.label)
	mux.HandleFunc("POST /v1/nodes/{name}/cordon", s.cordon)
	mux.HandleFunc("POST /v1/leave", s.leave)
	mux.HandleFunc("POST /v1/nodes/{name}/forget", s.forget)
}

// linearize makes a read with ?consistent=1 linearizable.
func (s *Server) linearize(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Query().Get("consistent") == "" {
		return true
	}
	if err := s.cfg.Reads.Linearize(r.Context()); err != nil {
		s.fail(w, r, err)
		return false
	}
	return true
}

func (s *Server) nodes(w http.ResponseWriter, r *http.Request) {
	if !s.linearize(w, r) {
		return
	}
	ns, err := s.cfg.Fleet.Nodes(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, nonNil(ns))
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	tok, err := s.cfg.Tokens.Token(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, api.TokenResponse{Token: tok})
}

func (s *Server) rotateToken(w http.ResponseWriter, r *http.Request) {
	tok, err := s.cfg.Tokens.RotateToken(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, api.TokenResponse{Token: tok})
}

// decodeBody reads a small JSON request body strictly.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: decode request: %v", api.ErrInvalid, err)
	}
	return nil
}

func (s *Server) label(w http.ResponseWriter, r *http.Request) {
	var req api.LabelRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.cfg.Fleet.Label(r.Context(), r.PathValue("name"), req); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) cordon(w http.ResponseWriter, r *http.Request) {
	var req api.CordonRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.cfg.Fleet.Cordon(r.Context(), r.PathValue("name"), req.Cordoned)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, res)
}

func (s *Server) leave(w http.ResponseWriter, r *http.Request) {
	var req api.LeaveRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.cfg.Membership.Leave(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, res)
}

func (s *Server) forget(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Fleet.Forget(r.Context(), r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

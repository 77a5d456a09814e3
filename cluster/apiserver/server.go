// Package apiserver owns the node's HTTP API: JSON over a unix socket that
// only root can open (mode 0600). Handlers decode, call the node through the
// small interfaces declared here, and encode; they hold no state of their
// own.
package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-edge/shoal/api"
)

// Apps changes the apps of the replicated state.
type Apps interface {
	Apply(ctx context.Context, apps []api.App) ([]api.ApplyResult, error)
	Delete(ctx context.Context, names []string) error
	// Scale sets replica counts of replicated apps, all or none.
	Scale(ctx context.Context, replicas map[string]int) ([]api.ApplyResult, error)
}

// Reads makes a read of this node's replica consistent.
type Reads interface {
	// Linearize returns once this node's replica holds every write
	// acknowledged before the call: a read after it is linearizable.
	Linearize(ctx context.Context) error
}

// Instances are the containers of this node.
type Instances interface {
	PS(ctx context.Context, app string) ([]api.InstanceStatus, error)
	LogPath(ctx context.Context, app string, index int) (string, error)
	RunContainer(ctx context.Context, req api.RunRequest, stdin io.Reader, stdout, stderr io.Writer) (int, error)
	// Where is the API address of the node running app/index and the way
	// to reach it, or "" when it is this node (or none).
	Where(ctx context.Context, app string, index int) (string, http.RoundTripper, error)
}

// Config wires a server.
type Config struct {
	Socket string
	// Remote, if set, is a listener of mutually authenticated TLS
	// connections (the cluster port's API protocol), served like the
	// socket.
	Remote     net.Listener
	Apps       Apps
	Reads      Reads
	Fleet      Fleet
	Tokens     Tokens
	Membership Membership
	Backups    Backups
	Instances  Instances
	Images     Images
	Exec       Execer
	Logger     *slog.Logger
}

// Server serves the API on a unix socket.
type Server struct {
	cfg  Config
	ln   net.Listener
	http *http.Server

	closeOnce sync.Once
}

// New listens on the socket, replacing a stale one left by a killed daemon.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if c, err := net.DialTimeout("unix", cfg.Socket, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("another shoal is serving %s", cfg.Socket)
	}
	os.Remove(cfg.Socket)
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Socket, err)
	}
	if err := os.Chmod(cfg.Socket, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, ln: ln}
	s.http = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	s.fleetRoutes(mux)
	s.snapshotRoutes(mux)
	mux.HandleFunc("POST /v1/apps", s.apply)
	mux.HandleFunc("DELETE /v1/apps", s.remove)
	mux.HandleFunc("POST /v1/scale", s.scale)
	mux.HandleFunc("GET /v1/ps", s.ps)
	mux.HandleFunc("GET /v1/logs/{app}/{index}", s.logs)
	mux.HandleFunc("POST /v1/images", s.importImage)
	mux.HandleFunc("GET /v1/images", s.images)
	mux.HandleFunc("DELETE /v1/images", s.removeImage)
	mux.HandleFunc("POST /v1/images/pull", s.pull)
	mux.HandleFunc("POST /v1/run", s.run)
	mux.HandleFunc("POST /v1/exec", s.exec)
	return mux
}

// Serve answers requests until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	lns := []net.Listener{s.ln}
	if s.cfg.Remote != nil {
		lns = append(lns, s.cfg.Remote)
	}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- s.http.Serve(ln) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.http.Shutdown(sctx)
	if err != nil && (errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed)) {
		err = nil
	}
	return err
}

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.http.Close()
		os.Remove(s.cfg.Socket)
	})
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	we := api.Wire(err)
	code := map[string]int{api.KindNotFound: 404, api.KindNoLeader: 503, api.KindInvalid: 400, api.KindConflict: 409, api.KindForbidden: 403,
		api.KindUnreachable: 502, api.KindNoSpace: 507, api.KindRemoved: 410}[we.Kind]
	if code == 0 {
		code = 500
		s.cfg.Logger.Error("api", "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(we)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.cfg.Fleet.Status(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, st)
}

// maxBody bounds JSON requests; specs are small.
const maxBody = 8 << 20

func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
	var apps []api.App
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&apps); err != nil {
		s.fail(w, r, fmt.Errorf("%w: decode apps: %v", api.ErrInvalid, err))
		return
	}
	res, err := s.cfg.Apps.Apply(r.Context(), apps)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, res)
}

func (s *Server) scale(w http.ResponseWriter, r *http.Request) {
	var req api.ScaleRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.cfg.Apps.Scale(r.Context(), req.Replicas)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, res)
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Apps.Delete(r.Context(), r.URL.Query()["name"]); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) ps(w http.ResponseWriter, r *http.Request) {
	if !s.linearize(w, r) {
		return
	}
	st, err := s.cfg.Instances.PS(r.Context(), r.URL.Query().Get("app"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, nonNil(st))
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func atoiParam(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q is not a number", api.ErrInvalid, name, v)
	}
	return n, nil
}

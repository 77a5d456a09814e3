package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/api"
	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/store"
)

// writes applies commands through Raft on the leader, wherever it is. A
// node that is not the leader sends the encoded command to it over the
// node protocol (POST /v1/apply, served by serveApply); the leader applies
// it and answers with the FSM's response or error. Safe for concurrent
// use: it keeps no state of its own.
type writes struct {
	self   string // this node's Raft server id
	raft   runningRaft
	leader leaderCaller
	room   writeRoom
	voters voterNamer
}

// runningRaft is Raft as it runs now: the node restarts it (relaxRaft,
// rejoin), so writes never keep one.
type runningRaft interface {
	r() *raft.Raft
}

// leaderCaller calls another node (the leader) over the node protocol.
type leaderCaller interface {
	nodeRequest(ctx context.Context, method string, addr raft.ServerAddress, path string, body io.Reader) (*http.Response, error)
}

// writeRoom is checked before a write: room on this node's disk.
type writeRoom interface {
	// checkDiskForWrite refuses a write of size bytes that this node's
	// disk has no room to apply.
	checkDiskForWrite(size int) error
}

// voterNamer says who this node is when the leader refuses its write
// (trust.asNotVoter).
type voterNamer interface {
	// asNotVoter turns a refusal for lack of a voter's certificate
	// into one naming the voters.
	asNotVoter(err error) error
}

var (
	_ runningRaft  = (*raftParts)(nil)
	_ leaderCaller = (*Node)(nil)
	_ writeRoom    = (*Node)(nil)
	_ voterNamer   = (*trust)(nil)
)

func newWrites(self string, r runningRaft, leader leaderCaller, room writeRoom, voters voterNamer) *writes {
	return &writes{self: self, raft: r, leader: leader, room: room, voters: voters}
}

// writeTimeout bounds a write: without a leader it fails instead of hanging.
const writeTimeout = 5 * time.Second

// forwardAnswer is the leader's answer to a forwarded command.
type forwardAnswer struct {
	Response json.RawMessage `json:"response,omitempty"`
	Error    *api.WireError  `json:"error,omitempty"`
	// NotApplied: the node was not the leader; the write went nowhere.
	NotApplied bool `json:"not_applied,omitempty"`
}

// write applies cmd through Raft, on the leader wherever it is, and decodes
// the response into out (a pointer; nil to drop it). Without a leader it
// fails within writeTimeout, wrapping api.ErrNoLeader; a leader elected
// meanwhile takes it.
func (w *writes) write(ctx context.Context, cmd any, out any) error {
	data, err := store.Encode(cmd)
	if err != nil {
		return err
	}
	return w.forward(ctx, data, out)
}

// applyLocal applies cmd on this node, which must be the leader: the
// leader's own loops use it and never forward.
func (w *writes) applyLocal(cmd any, timeout time.Duration) (any, error) {
	data, err := store.Encode(cmd)
	if err != nil {
		return nil, err
	}
	resp, err := w.applyRaw(data, timeout)
	if errors.Is(err, raft.ErrNotLeader) {
		return nil, fmt.Errorf("%w (%v)", api.ErrNoLeader, err)
	}
	return resp, err
}

// applyRaw returns raft.ErrNotLeader as it is, for the caller to forward;
// other losses of leadership mean no leader for now.
func (w *writes) applyRaw(data []byte, timeout time.Duration) (any, error) {
	if err := w.room.checkDiskForWrite(len(data)); err != nil {
		return nil, err
	}
	f := w.raft.r().Apply(data, timeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			// Refused before it reached the log: sent again to the
			// leader there is once the hand-over is done.
			return nil, raft.ErrNotLeader
		case errors.Is(err, raft.ErrLeadershipLost):
			return nil, fmt.Errorf("%w: leadership was lost while the write was in flight: it may or may not be applied; read before retrying", api.ErrNoLeader)
		case errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrRaftShutdown):
			return nil, fmt.Errorf("%w (%v)", api.ErrNoLeader, err)
		}
		return nil, fmt.Errorf("raft apply: %w", err)
	}
	if err, ok := f.Response().(error); ok {
		return nil, err
	}
	return f.Response(), nil
}

func setResponse(resp, out any) error {
	if out == nil || resp == nil {
		return nil
	}
	dst := reflect.ValueOf(out).Elem()
	src := reflect.ValueOf(resp)
	if !src.Type().AssignableTo(dst.Type()) {
		return fmt.Errorf("apply: response %T does not fit %T", resp, out)
	}
	dst.Set(src)
	return nil
}

func (w *writes) forward(ctx context.Context, data []byte, out any) error {
	// This node applies the entry too, leader or not.
	if err := w.room.checkDiskForWrite(len(data)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	var last error
	for {
		// A write that certainly did not reach a leader (none known, the
		// dial failed, or it was no longer the leader) waits for the next
		// one, which may be this node: an election takes about a second.
		addr, id := w.raft.r().LeaderWithID()
		switch {
		case addr == "":
		case string(id) == w.self:
			deadline, _ := ctx.Deadline()
			resp, err := w.applyRaw(data, time.Until(deadline))
			if !errors.Is(err, raft.ErrNotLeader) {
				if err != nil {
					return err
				}
				return setResponse(resp, out)
			}
		default:
			retry, err := w.forwardOnce(ctx, addr, data, out)
			if !retry {
				return err
			}
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return last
			}
			return fmt.Errorf("%w: this node knows of no leader; writes need a majority of the voters", api.ErrNoLeader)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// forwardOnce sends a write to the leader at addr; retry says that it was
// certainly not applied.
func (w *writes) forwardOnce(ctx context.Context, addr raft.ServerAddress, data []byte, out any) (retry bool, err error) {
	_, hp := splitRaftAddr(addr)
	resp, err := w.leader.nodeRequest(ctx, http.MethodPost, addr, "/v1/apply", bytes.NewReader(data))
	if err != nil {
		var de *dialError
		if errors.As(err, &de) {
			return true, fmt.Errorf("%w: the leader at %s cannot be reached: %v", api.ErrNoLeader, hp, de.err)
		}
		return false, fmt.Errorf("%w: the leader at %s did not answer (%v): the write may or may not be applied; read before retrying", api.ErrNoLeader, hp, err)
	}
	defer resp.Body.Close()
	notApplied, err := readAnswer(resp, out)
	if errors.Is(err, api.ErrForbidden) {
		return false, w.voters.asNotVoter(err)
	}
	if err != nil && !notApplied {
		var we *api.WireError
		if !errors.As(err, &we) {
			err = fmt.Errorf("forward to the leader at %s: %w", hp, err)
		}
	}
	return notApplied, err
}

// nodeGet asks the node at Raft address addr for path over the node
// protocol and decodes its answer.
func nodeGet[T any](ctx context.Context, c leaderCaller, addr raft.ServerAddress, path string) (T, error) {
	var out T
	resp, err := c.nodeRequest(ctx, http.MethodGet, addr, path, nil)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	_, err = readAnswer(resp, &out)
	return out, err
}

// readAnswer decodes the answer of a node call into out (a pointer; nil
// to drop it). notApplied: the node was not the leader, the call went
// nowhere.
func readAnswer(resp *http.Response, out any) (notApplied bool, err error) {
	if resp.StatusCode == http.StatusForbidden {
		// Refused before the call was served (votersOnly): a plain error.
		var we api.WireError
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxForwardBody)).Decode(&we); err != nil || we.Message == "" {
			return true, fmt.Errorf("%w: %s", api.ErrForbidden, resp.Status)
		}
		return true, &we
	}
	var ans forwardAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxForwardBody)).Decode(&ans); err != nil {
		return false, fmt.Errorf("%s: %w", resp.Status, err)
	}
	if ans.Error != nil {
		return ans.NotApplied, ans.Error
	}
	if out == nil || len(ans.Response) == 0 {
		return false, nil
	}
	return false, json.Unmarshal(ans.Response, out)
}

// writeAnswer answers a node call with v, or err.
func writeAnswer(w http.ResponseWriter, v any, err error, notApplied bool) {
	ans := forwardAnswer{NotApplied: notApplied}
	if err == nil && v != nil {
		ans.Response, err = json.Marshal(v)
	}
	if err != nil {
		ans.Error = api.Wire(err)
	}
	writeJSONResponse(w, ans)
}

// writeWireError answers a node call with code and err in the API's wire form.
func writeWireError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(api.Wire(err))
}

// errLeadershipMoved answers a node call meant for the leader on a node
// that no longer is.
var errLeadershipMoved = fmt.Errorf("%w: leadership moved; try again", api.ErrNoLeader)

// maxForwardBody bounds a forwarded command and its answer.
const maxForwardBody = 16 << 20

// serveApply is the leader's side of a forwarded write. It does not
// forward again: a node that is no longer the leader says so.
func (wr *writes) serveApply(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxForwardBody+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(data) > maxForwardBody {
		writeAnswer(w, nil, fmt.Errorf("%w: a write of more than %d MiB", api.ErrInvalid, maxForwardBody>>20), false)
		return
	}
	resp, err := wr.applyRaw(data, writeTimeout)
	if errors.Is(err, raft.ErrNotLeader) {
		writeAnswer(w, nil, errLeadershipMoved, true)
		return
	}
	writeAnswer(w, resp, err, false)
}

// internalServers serve the join protocol (anyone) and the node protocol
// (nodes only, checked by the port), each on its own listener.
func (n *Node) internalServers() map[string]*http.Server {
	join := http.NewServeMux()
	join.HandleFunc("POST /v1/join", n.serveJoin)
	node := http.NewServeMux()
	// Who may call what: see trust.go.
	node.HandleFunc("POST /v1/apply", n.trust.votersOnly(n.writes.serveApply))
	node.HandleFunc("POST /v1/forget", n.trust.votersOnly(n.fleet.serveForget))
	node.HandleFunc("POST /v1/leave", n.serveLeave)     // the caller itself
	node.HandleFunc("POST /v1/report", n.reports.serve) // the caller's own instances
	node.HandleFunc("GET /v1/read-index", n.reads.serveReadIndex)
	node.HandleFunc("GET /v1/ps", n.reports.servePS)
	node.HandleFunc("GET /v1/ca-key", n.caKeys.serveCAKey)
	node.HandleFunc("GET /v1/member", n.serveMember)
	// Joins come from anyone: a connection is held no longer than a join
	// takes, and bodies are small.
	return map[string]*http.Server{
		pki.ProtoJoin: {Handler: join, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 10 * time.Second, IdleTimeout: time.Second, MaxHeaderBytes: 8 << 10},
		pki.ProtoNode: {Handler: node, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ConnContext: withPeerState},
	}
}

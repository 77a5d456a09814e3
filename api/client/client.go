// Package client owns the CLI's side of the node API: typed calls over the
// local unix socket, or to a remote node over mutual TLS, with the daemon's
// errors mapped back to api sentinels.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/shoal-edge/shoal/api"
)

// Client talks to one node.
type Client struct {
	where string // the socket or host:port, for messages
	base  string // URL prefix
	dial  func(ctx context.Context) (net.Conn, error)
	http  *http.Client
	// unreachable explains a failed dial.
	unreachable func(err error) error
	// credential, if set, is the admin credential's TLS configuration:
	// with it the client takes a request that a non-voter refused
	// (api.NotVoterError) to a voter, once.
	credential func() (*tls.Config, error)
}

// WithCredential lets c take a request that a non-voter refused to a
// voter, with the admin credential cred gives (called only then).
func (c *Client) WithCredential(cred func() (*tls.Config, error)) *Client {
	c.credential = cred
	return c
}

// New returns a client of the node serving socket.
func New(socket string) *Client {
	c := &Client{where: socket, base: "http://shoal"}
	c.dial = func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
	c.unreachable = func(err error) error {
		switch {
		case errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("no shoal node is serving %s: start one with `shoal up` or pass --data-dir", socket)
		case errors.Is(err, syscall.EACCES):
			return fmt.Errorf("permission denied on %s: the API socket is for root only", socket)
		}
		return err
	}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return c.dial(ctx) },
	}}
	return c
}

// NewRemote returns a client of the node at addr (host:port of its cluster
// port), speaking over cfg: mutual TLS with the API protocol and the admin
// credential, which also takes a request a non-voter refused to a voter.
func NewRemote(addr string, cfg *tls.Config) *Client {
	c := newRemote(addr, cfg)
	c.credential = func() (*tls.Config, error) { return cfg, nil }
	return c
}

func newRemote(addr string, cfg *tls.Config) *Client {
	c := &Client{where: addr, base: "https://" + addr}
	c.dial = func(ctx context.Context) (net.Conn, error) {
		d := &tls.Dialer{Config: cfg}
		return d.DialContext(ctx, "tcp", addr)
	}
	c.unreachable = func(err error) error {
		// The request's method and URL say nothing the user gave.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("node %s: %w", addr, err)
	}
	c.http = &http.Client{Transport: &http.Transport{
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return c.dial(ctx) },
	}}
	return c
}

// Unusable returns a client whose every call fails with err: for a caller
// that could not configure one (a bad credential) and reports it on use.
func Unusable(err error) *Client {
	c := &Client{base: "http://shoal"}
	c.dial = func(context.Context) (net.Conn, error) { return nil, err }
	c.unreachable = func(error) error { return err }
	c.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return c.dial(ctx) },
	}}
	return c
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string) (*http.Response, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	// The transport closes a body that can be closed; a body kept open
	// can be sent again to a voter.
	reqBody := body
	if _, ok := body.(io.Closer); ok {
		reqBody = struct{ io.Reader }{body}
	}
	req, err := http.NewRequestWithContext(ctx, method, u, reqBody)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.unreachable(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var we api.WireError
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(data, &we) != nil || we.Message == "" {
			return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
		}
		// A refusal may send the request to a voter, if its body can be
		// sent again.
		s, seekable := body.(io.Seeker)
		if body != nil && !seekable {
			return nil, &we
		}
		var rewind func() error
		if seekable {
			rewind = func() error { _, err := s.Seek(0, io.SeekStart); return err }
		}
		return redirect(c, &we, rewind, func(v *Client) (*http.Response, error) {
			return v.do(ctx, method, path, q, body, contentType)
		})
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	resp, err := c.do(ctx, http.MethodGet, path, q, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *Client) sendJSON(ctx context.Context, method, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, method, path, nil, bytes.NewReader(body), "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// No content: nothing to decode (a node of an earlier release answers
	// some requests so).
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Status is the node's view of the cluster.
func (c *Client) Status(ctx context.Context) (api.ClusterStatus, error) {
	var st api.ClusterStatus
	return st, c.getJSON(ctx, "/v1/status", nil, &st)
}

// Nodes lists the cluster's nodes; consistent asks for a linearizable
// read, which needs a leader.
func (c *Client) Nodes(ctx context.Context, consistent bool) ([]api.Node, error) {
	var q url.Values
	if consistent {
		q = url.Values{"consistent": {"1"}}
	}
	var ns []api.Node
	return ns, c.getJSON(ctx, "/v1/nodes", q, &ns)
}

// Token returns the cluster's join token.
func (c *Client) Token(ctx context.Context) (string, error) {
	var t api.TokenResponse
	return t.Token, c.getJSON(ctx, "/v1/token", nil, &t)
}

// RotateToken makes a new join secret and returns the new token; the old
// one admits no node afterwards.
func (c *Client) RotateToken(ctx context.Context) (string, error) {
	var t api.TokenResponse
	return t.Token, c.sendJSON(ctx, http.MethodPost, "/v1/token/rotate", struct{}{}, &t)
}

// Apply creates or updates apps.
func (c *Client) Apply(ctx context.Context, apps []api.App) ([]api.ApplyResult, error) {
	var res []api.ApplyResult
	return res, c.sendJSON(ctx, http.MethodPost, "/v1/apps", apps, &res)
}

// Delete removes apps.
func (c *Client) Delete(ctx context.Context, names []string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/apps", url.Values{"name": names}, nil, "")
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// PS lists instances, of one app when app is not empty.
func (c *Client) PS(ctx context.Context, app string) ([]api.InstanceStatus, error) {
	var q url.Values
	if app != "" {
		q = url.Values{"app": {app}}
	}
	var out []api.InstanceStatus
	return out, c.getJSON(ctx, "/v1/ps", q, &out)
}

// Logs copies an instance's output to w; with follow it returns when ctx ends.
func (c *Client) Logs(ctx context.Context, app string, index int, opts LogOptions, w io.Writer) error {
	q := url.Values{"tail": {strconv.Itoa(opts.Tail)}}
	if opts.Follow {
		q.Set("follow", "1")
	}
	if opts.Timestamps {
		q.Set("timestamps", "1")
	}
	if !opts.Since.IsZero() {
		q.Set("since", opts.Since.UTC().Format(time.RFC3339Nano))
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/logs/"+url.PathEscape(app)+"/"+strconv.Itoa(index), q, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ImportImage uploads an image tarball.
func (c *Client) ImportImage(ctx context.Context, r io.Reader) ([]api.Image, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/images", nil, r, "application/x-tar")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []api.Image
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// Images lists the node's images.
func (c *Client) Images(ctx context.Context) ([]api.Image, error) {
	var out []api.Image
	return out, c.getJSON(ctx, "/v1/images", nil, &out)
}

// Run starts a one-off container on the node, copies its output and
// returns its exit code. A stdin that is not nil is streamed to the
// container as the request's body while its output comes back; the
// request itself then goes in the query.
func (c *Client) Run(ctx context.Context, req api.RunRequest, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return -1, err
	}
	var q url.Values
	var in io.Reader = bytes.NewReader(body)
	ctype := "application/json"
	if stdin != nil {
		q, in, ctype = url.Values{"req": {string(body)}}, stdin, "application/octet-stream"
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/run", q, in, ctype)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	return api.ReadFrames(resp.Body, stdout, stderr)
}

// RemoveImages deletes the images refs name, all or none: the node
// removes nothing when one is missing or used by an app on it.
func (c *Client) RemoveImages(ctx context.Context, refs []string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/images", url.Values{"ref": refs}, nil, "")
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// PullImage pulls an image into the node's store; progress (may be nil)
// sees the bytes fetched so far.
func (c *Client) PullImage(ctx context.Context, req api.PullRequest, progress func(done, total int64)) (api.Image, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return api.Image{}, err
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/images/pull", nil, bytes.NewReader(body), "application/json")
	if err != nil {
		return api.Image{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var p api.PullProgress
		if err := dec.Decode(&p); err != nil {
			return api.Image{}, fmt.Errorf("pull %s: the node stopped answering: %w", req.Ref, err)
		}
		switch {
		case p.Error != "":
			return api.Image{}, &api.WireError{Kind: api.KindInternal, Message: p.Error}
		case p.Image != nil:
			return *p.Image, nil
		case progress != nil:
			progress(p.Done, p.Total)
		}
	}
}

// Label sets and removes a node's labels.
func (c *Client) Label(ctx context.Context, node string, req api.LabelRequest) error {
	return c.sendJSON(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(node)+"/labels", req, nil)
}

// Cordon drains a node or lets it take instances again; a drain says
// which apps it leaves without a node.
func (c *Client) Cordon(ctx context.Context, node string, cordoned bool) (api.CordonResult, error) {
	var res api.CordonResult
	return res, c.sendJSON(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(node)+"/cordon", api.CordonRequest{Cordoned: cordoned}, &res)
}

// Leave takes the node out of its cluster: it answers once it has
// stopped its containers, and stops afterwards. A node of an earlier
// release answers with no result.
func (c *Client) Leave(ctx context.Context, req api.LeaveRequest) (api.LeaveResult, error) {
	var res api.LeaveResult
	return res, c.sendJSON(ctx, http.MethodPost, "/v1/leave", req, &res)
}

// SaveSnapshot copies a backup of the desired state to w.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, "/v1/snapshot", nil, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// RestoreSnapshot sends a backup to restore.
func (c *Client) RestoreSnapshot(ctx context.Context, r io.Reader) (api.RestoreResult, error) {
	var res api.RestoreResult
	resp, err := c.do(ctx, http.MethodPost, "/v1/snapshot", nil, r, "application/octet-stream")
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	return res, json.NewDecoder(resp.Body).Decode(&res)
}

// Forget takes a node that is gone for good out of the cluster.
func (c *Client) Forget(ctx context.Context, node string) error {
	return c.sendJSON(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(node)+"/forget", struct{}{}, nil)
}

// Scale sets the replica counts of replicated apps.
func (c *Client) Scale(ctx context.Context, replicas map[string]int) ([]api.ApplyResult, error) {
	var res []api.ApplyResult
	return res, c.sendJSON(ctx, http.MethodPost, "/v1/scale", api.ScaleRequest{Replicas: replicas}, &res)
}

package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/shoal-edge/shoal/api"
)

// Exec runs a command in a running instance, streaming stdin (when not nil)
// and resizes to it and its output back; it returns the command's exit code.
func (c *Client) Exec(ctx context.Context, req api.ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan api.TermSize) (int, error) {
	req.HasStdin = stdin != nil
	body, err := json.Marshal(req)
	if err != nil {
		return -1, err
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return -1, c.unreachable(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	hreq, _ := http.NewRequest(http.MethodPost, c.base+"/v1/exec?req="+url.QueryEscape(string(body)), nil)
	hreq.Header.Set("Connection", "Upgrade")
	hreq.Header.Set("Upgrade", "shoal-exec")
	if err := hreq.Write(conn); err != nil {
		return -1, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, hreq)
	if err != nil {
		return -1, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		var we api.WireError
		if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&we) == nil && we.Message != "" {
			// Nothing of stdin was read yet: a voter can take it all.
			return redirect(c, &we, nil, func(v *Client) (int, error) {
				return v.Exec(ctx, req, stdin, stdout, stderr, resize)
			})
		}
		return -1, fmt.Errorf("exec: %s", resp.Status)
	}

	var mu sync.Mutex
	send := func(kind byte, data []byte) error {
		mu.Lock()
		defer mu.Unlock()
		return api.WriteFrame(conn, kind, data)
	}
	done := make(chan struct{})
	defer close(done)
	if stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := stdin.Read(buf)
				if n > 0 && send(api.FrameStdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					send(api.FrameStdinEOF, nil)
					return
				}
			}
		}()
	}
	if resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-resize:
					if !ok {
						return
					}
					send(api.FrameResize, api.ResizeFrame(sz.Rows, sz.Cols))
				case <-done:
					return
				}
			}
		}()
	}
	code, err := api.ReadFrames(br, stdout, stderr)
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	return code, err
}

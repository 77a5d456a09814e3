package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// closedAddr is a loopback address nothing listens on any more.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestProbeHTTP(t *testing.T) {
	mux := http.NewServeMux()
	for _, code := range []int{200, 204, 302, 404, 500, 503} {
		mux.HandleFunc(fmt.Sprintf("/%d", code), func(w http.ResponseWriter, r *http.Request) {
			if code == 302 {
				// Not followed: the target would fail.
				w.Header().Set("Location", "http://"+closedAddr(t)+"/")
			}
			w.WriteHeader(code)
			fmt.Fprintf(w, "  body of %d\n", code)
		})
	}
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("é", 10*MaxOutput)))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, tt := range []struct {
		path   string
		ok     bool
		output string
	}{
		{"/200", true, "200 OK: body of 200"},
		{"/204", true, "204 No Content"},
		{"/302", true, "302 Found: body of 302"},
		{"/404", false, "404 Not Found: body of 404"},
		{"/500", false, "500 Internal Server Error: body of 500"},
		{"/503", false, "503 Service Unavailable: body of 503"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			r := Probe(t.Context(), Check{HTTP: srv.URL + tt.path}, Target{})
			if r.OK != tt.ok || r.Output != tt.output || r.Err != nil {
				t.Errorf("Probe = %+v; want OK %v, output %q", r, tt.ok, tt.output)
			}
		})
	}
	t.Run("output is short", func(t *testing.T) {
		r := Probe(t.Context(), Check{HTTP: srv.URL + "/big"}, Target{})
		if !r.OK || len(r.Output) > MaxOutput+len("…") || !utf8.ValidString(r.Output) || !strings.HasSuffix(r.Output, "é…") {
			t.Errorf("Probe = OK %v, %d bytes of output %q", r.OK, len(r.Output), r.Output)
		}
	})
	t.Run("localhost", func(t *testing.T) {
		url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/200"
		if r := Probe(t.Context(), Check{HTTP: url}, Target{}); !r.OK {
			t.Errorf("Probe %s = %+v", url, r)
		}
	})
}

func TestProbeHTTPRefused(t *testing.T) {
	r := Probe(t.Context(), Check{HTTP: "http://" + closedAddr(t) + "/"}, Target{})
	if r.OK || !errors.Is(r.Err, syscall.ECONNREFUSED) {
		t.Errorf("Probe = %+v; want connection refused", r)
	}
}

func TestProbeHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	start := time.Now()
	r := Probe(t.Context(), Check{HTTP: srv.URL, Timeout: 200 * time.Millisecond}, Target{})
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("probe took %s with a 200ms timeout", took)
	}
	if r.OK || !errors.Is(r.Err, ErrTimeout) || !strings.Contains(r.Err.Error(), "after 200ms") {
		t.Errorf("Probe = %+v; want ErrTimeout after 200ms", r)
	}
}

func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := Probe(t.Context(), Check{TCP: ln.Addr().String()}, Target{})
	if !r.OK || r.Err != nil || r.Output != "connected to "+ln.Addr().String() {
		t.Errorf("Probe open port = %+v", r)
	}
	r = Probe(t.Context(), Check{TCP: closedAddr(t)}, Target{})
	if r.OK || !errors.Is(r.Err, syscall.ECONNREFUSED) {
		t.Errorf("Probe closed port = %+v; want connection refused", r)
	}
}

// A probe cut short by its caller is not a timeout.
func TestProbeCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := Probe(ctx, Check{TCP: "127.0.0.1:1"}, Target{})
	if r.OK || r.Err == nil || errors.Is(r.Err, ErrTimeout) {
		t.Errorf("Probe = %+v; want a non-timeout error", r)
	}
}

func TestProbeExec(t *testing.T) {
	var gotArgs []string
	exec := func(code int, out string, err error) func(context.Context, []string, io.Writer) (int, error) {
		return func(ctx context.Context, args []string, w io.Writer) (int, error) {
			gotArgs = args
			io.WriteString(w, out)
			return code, err
		}
	}
	c := Check{Exec: []string{"pg_isready", "-q"}}
	for _, tt := range []struct {
		name string
		exec func(context.Context, []string, io.Writer) (int, error)
		want Result
	}{
		{"exit 0", exec(0, "accepting connections\n", nil), Result{OK: true, Output: "accepting connections"}},
		{"exit 0 silent", exec(0, "", nil), Result{OK: true}},
		{"exit 1", exec(1, "no response\n", nil), Result{Output: "no response"}},
		{"exit 2 silent", exec(2, "", nil), Result{Output: "exit code 2"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Probe(t.Context(), c, Target{Exec: tt.exec})
			if got != tt.want {
				t.Errorf("Probe = %+v, want %+v", got, tt.want)
			}
			if strings.Join(gotArgs, " ") != "pg_isready -q" {
				t.Errorf("exec got args %q", gotArgs)
			}
		})
	}
	t.Run("exec error", func(t *testing.T) {
		boom := errors.New("no such process")
		r := Probe(t.Context(), c, Target{Exec: exec(-1, "", boom)})
		if r.OK || !errors.Is(r.Err, boom) || r.Summary() != "exec pg_isready: no such process" {
			t.Errorf("Probe = %+v (%q)", r, r.Summary())
		}
	})
	t.Run("unsupported", func(t *testing.T) {
		if r := Probe(t.Context(), c, Target{}); r.OK || !errors.Is(r.Err, ErrExecUnsupported) {
			t.Errorf("Probe = %+v; want ErrExecUnsupported", r)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		var deadline time.Time
		hang := func(ctx context.Context, args []string, _ io.Writer) (int, error) {
			deadline, _ = ctx.Deadline()
			<-ctx.Done()
			return 137, nil // killed, as a runtime might report it
		}
		start := time.Now()
		r := Probe(t.Context(), Check{Exec: []string{"sleep", "60"}, Timeout: 50 * time.Millisecond}, Target{Exec: hang})
		if r.OK || !errors.Is(r.Err, ErrTimeout) || r.Output != "exit code 137" {
			t.Errorf("Probe = %+v; want ErrTimeout and exit code 137", r)
		}
		if d := deadline.Sub(start); d <= 0 || d > time.Second {
			t.Errorf("exec's deadline was %s after the probe began, want 50ms", d)
		}
	})
}

func TestProbeInvalid(t *testing.T) {
	r := Probe(t.Context(), Check{HTTP: "https://example.com/"}, Target{})
	if r.OK || !errors.Is(r.Err, ErrInvalidCheck) {
		t.Errorf("Probe = %+v; want ErrInvalidCheck", r)
	}
}

// A command that prints without end is read to its end, but only the first
// MaxOutput bytes are kept; the rest is counted and the summary says so.
func TestProbeExecEndlessOutput(t *testing.T) {
	const chunks, size = 4096, 32 << 10 // 128 MiB in all
	yes := func(ctx context.Context, args []string, w io.Writer) (int, error) {
		line := []byte(strings.Repeat("y\n", size/2))
		for range chunks {
			if _, err := w.Write(line); err != nil {
				return -1, err
			}
		}
		return 1, nil
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := Probe(t.Context(), Check{Exec: []string{"yes"}}, Target{Exec: yes})
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Errorf("probing allocated %d bytes for %d bytes of output; want it bounded", grew, chunks*size)
	}
	if len(r.Output) > MaxOutput || !strings.HasPrefix(r.Output, "y\ny\n") {
		t.Errorf("Output is %d bytes (%.20q...), want the first %d", len(r.Output), r.Output, MaxOutput)
	}
	if want := int64(chunks*size - MaxOutput); r.Dropped != want {
		t.Errorf("Dropped = %d, want %d", r.Dropped, want)
	}
	if want := fmt.Sprintf(" ... [%d bytes dropped]", chunks*size-MaxOutput); !strings.HasSuffix(r.Summary(), want) {
		t.Errorf("Summary %q does not end with %q", r.Summary(), want)
	}
}

package image

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// errPlainHTTP is what pullTransport answers a plain-HTTP request it may
// not send.
var errPlainHTTP = errors.New("plain HTTP is only used for loopback registries or with Insecure")

// errRedirectLoop is what pullTransport answers a request that comes after
// maxRedirects redirects.
var errRedirectLoop = fmt.Errorf("registry redirected more than %d times", maxRedirects)

// pullTransport is the HTTP transport of one Pull. go-containerregistry
// falls back to plain HTTP on its own for some hosts (RFC 1918 addresses,
// *.localhost); shoal allows it only for loopback registries and with
// Insecure, so credentials and content never cross a network in the clear
// unless asked to.
//
// It also bounds what a registry can make a pull do: redirects (the
// client go-containerregistry builds follows them without Go's default
// limit), the size of every response but a blob download (manifests,
// indexes, tokens, errors), and, through watch, how long a request may go
// without a byte arriving.
type pullTransport struct {
	*http.Transport
	insecure bool
	watch    *stallWatch
}

func newPullTransport(insecure bool, watch *stallWatch) *pullTransport {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	if insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // what Insecure asks for
	}
	return &pullTransport{Transport: t, insecure: insecure, watch: watch}
}

func (t *pullTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !t.insecure && !isLoopbackHost(req.URL.Host) {
		return nil, fmt.Errorf("%s: %w", req.URL.Host, errPlainHTTP)
	}
	// The client sets Response on a request it makes to follow a
	// redirect; origin is the request the client was asked to make.
	hops, origin := 0, req
	for origin.Response != nil && origin.Response.Request != nil {
		hops, origin = hops+1, origin.Response.Request
	}
	if hops > maxRedirects {
		return nil, fmt.Errorf("%s: %w", req.URL.Host, errRedirectLoop)
	}
	t.watch.begin()
	resp, err := t.Transport.RoundTrip(req)
	if err != nil {
		t.watch.end()
		return nil, err
	}
	body := resp.Body
	if !isBlobDownload(origin, resp) {
		if resp.ContentLength > maxManifestSize {
			resp.Body.Close()
			t.watch.end()
			return nil, fmt.Errorf("%s %s: %w: response of %d bytes, more than the %s a manifest may have",
				req.Method, req.URL.Redacted(), ErrOversized, resp.ContentLength, mib(maxManifestSize))
		}
		body = struct {
			io.Reader
			io.Closer
		}{&boundedReader{r: body, left: maxManifestSize, err: func() error {
			return fmt.Errorf("%s %s: %w: response longer than the %s a manifest may have", req.Method, req.URL.Redacted(), ErrOversized, mib(maxManifestSize))
		}}, body}
	}
	resp.Body = &watchedBody{ReadCloser: body, watch: t.watch}
	return resp, nil
}

// isBlobDownload tells the responses whose size the caller bounds itself
// (fetchBlob reads no more than the manifest declares): those to a blob
// GET, wherever its redirects led (registries send blobs from a CDN or
// object store, under paths of their own).
func isBlobDownload(req *http.Request, resp *http.Response) bool {
	return req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") &&
		resp.StatusCode >= 200 && resp.StatusCode < 300
}

// isLoopbackHost reports whether host ("name[:port]") is localhost or a
// loopback address: 127.0.0.0/8 or ::1.
func isLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// explainPullError turns what the registry client returned into an error
// that says what happened and what to do, wrapping the matching sentinel
// and the original error.
func explainPullError(ctx context.Context, ref name.Reference, auth credentials, err error) error {
	registry := ref.Context().RegistryStr()
	if ctx.Err() != nil {
		// A stall, or a deadline the caller gave a cause, says it all.
		if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
			return cause
		}
		return fmt.Errorf("cancelled: %w", context.Cause(ctx))
	}
	// A loopback or Insecure registry is tried over HTTPS and plain HTTP at
	// once, and both errors come back; the TLS one is the telling one.
	var unknownCA x509.UnknownAuthorityError
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &unknownCA) || errors.As(err, &certErr) {
		return fmt.Errorf("registry %s: TLS certificate not trusted; add its CA to the system's, or set Insecure: %w", registry, err)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusUnauthorized || hasCode(te, transport.UnauthorizedErrorCode):
			if auth.source == "" {
				return fmt.Errorf("%w: registry %s requires credentials (or has no repository %s): give a username and password, or a docker config.json with an \"auths\" entry for %s (docker login %s): %w",
					ErrUnauthorized, registry, ref.Context().RepositoryStr(), registry, registry, err)
			}
			return fmt.Errorf("%w: registry %s rejected the credentials from %s: %w", ErrUnauthorized, registry, auth.source, err)
		case te.StatusCode == http.StatusForbidden || hasCode(te, transport.DeniedErrorCode):
			return fmt.Errorf("%w: registry %s denied access (credentials: %s): %w", ErrUnauthorized, registry, cmp.Or(auth.source, "none"), err)
		case hasCode(te, transport.BlobUnknownErrorCode):
			return fmt.Errorf("registry %s lacks a blob the manifest lists: %w", registry, err)
		case hasCode(te, transport.NameUnknownErrorCode):
			return fmt.Errorf("%w: registry %s has no repository %s: %w", ErrManifestUnknown, registry, ref.Context().RepositoryStr(), err)
		case te.StatusCode == http.StatusNotFound || hasCode(te, transport.ManifestUnknownErrorCode):
			what := "tag " + ref.Identifier()
			if _, ok := ref.(name.Digest); ok {
				what = "manifest " + ref.Identifier()
			}
			return fmt.Errorf("%w: registry %s has no %s in %s: %w", ErrManifestUnknown, registry, what, ref.Context().RepositoryStr(), err)
		}
		return err
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("%w: unknown host %s: %w", ErrUnreachable, dnsErr.Name, err)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return fmt.Errorf("%w: cannot connect to %s: %w", ErrUnreachable, registry, err)
	}
	if errors.Is(err, errRedirectLoop) {
		return fmt.Errorf("registry %s: gave up: %w", registry, err)
	}
	if errors.Is(err, errPlainHTTP) {
		return fmt.Errorf("registry %s does not speak HTTPS; set Insecure to use plain HTTP: %w", registry, err)
	}
	return err
}

func hasCode(te *transport.Error, code transport.ErrorCode) bool {
	for _, d := range te.Errors {
		if d.Code == code {
			return true
		}
	}
	return false
}

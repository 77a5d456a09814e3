package apiserver

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
)

// proxiedHeader marks a request one node passed to another, so that it is
// never passed on again.
const proxiedHeader = "X-Shoal-Proxied"

// elsewhere passes a request for an instance on another node (logs, exec)
// to that node's API, over the cluster port; it reports whether it
// answered the request, which it also does when it cannot pass it on.
// The node's answer, an upgraded exec stream included, goes back as it is.
func (s *Server) elsewhere(w http.ResponseWriter, r *http.Request, app, index string) bool {
	if r.Header.Get(proxiedHeader) != "" {
		return false
	}
	i, err := strconv.Atoi(index)
	if err != nil {
		return false
	}
	addr, via, err := s.cfg.Instances.Where(r.Context(), app, i)
	if err != nil {
		s.fail(w, r, err)
		return true
	}
	if addr == "" {
		return false
	}
	target := &url.URL{Scheme: "https", Host: addr}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set(proxiedHeader, "1")
		},
		Transport:     via,
		FlushInterval: -1, // logs -f and exec stream as they come
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.fail(w, r, err)
		},
	}
	p.ServeHTTP(w, r)
	return true
}

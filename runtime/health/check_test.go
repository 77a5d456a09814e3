package health

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		check Check
		err   string // "" when valid
	}{
		{"http", Check{HTTP: "http://127.0.0.1:8080/healthz"}, ""},
		{"http default port", Check{HTTP: "http://localhost/healthz"}, ""},
		{"http upper-case scheme", Check{HTTP: "HTTP://[::1]:80/"}, ""},
		{"tcp", Check{TCP: "127.0.0.1:5432"}, ""},
		{"tcp v6", Check{TCP: "[::1]:5432"}, ""},
		{"exec", Check{Exec: []string{"pg_isready", "-q"}, Interval: time.Second, Timeout: time.Second, StartPeriod: time.Minute, Retries: 5}, ""},
		{"none", Check{}, "set one of HTTP, TCP or Exec"},
		{"two", Check{HTTP: "http://a:1/", TCP: "a:1"}, "not HTTP and TCP"},
		{"three", Check{HTTP: "http://a:1/", TCP: "a:1", Exec: []string{"x"}}, "not HTTP and TCP and Exec"},
		{"negative interval", Check{TCP: "a:1", Interval: -1}, "Interval is negative"},
		{"negative timeout", Check{TCP: "a:1", Timeout: -time.Second}, "Timeout is negative"},
		{"negative start period", Check{TCP: "a:1", StartPeriod: -time.Second}, "StartPeriod is negative"},
		{"negative retries", Check{TCP: "a:1", Retries: -1}, "Retries is negative"},
		{"https", Check{HTTP: "https://127.0.0.1/"}, `scheme must be http, not "https"`},
		{"no scheme", Check{HTTP: "//127.0.0.1:8080/healthz"}, `scheme must be http, not ""`},
		{"host:port without scheme", Check{HTTP: "127.0.0.1:8080/healthz"}, "first path segment"},
		{"bad url", Check{HTTP: "http://[::1/"}, "missing ']'"},
		{"no host", Check{HTTP: "http:///healthz"}, "no host"},
		{"bad http port", Check{HTTP: "http://a:99999/"}, "bad port"},
		{"tcp without port", Check{TCP: "127.0.0.1"}, "missing port"},
		{"tcp without host", Check{TCP: ":5432"}, "no host"},
		{"tcp bad port", Check{TCP: "a:pg"}, `bad port "pg"`},
		{"exec empty name", Check{Exec: []string{""}}, "empty command name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check.Validate()
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrInvalidCheck) {
				t.Fatalf("Validate = %v; want ErrInvalidCheck containing %q", err, tt.err)
			}
		})
	}
}

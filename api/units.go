package api

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as "5s" in specs and JSON.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads the Go duration syntax ("90s", "1m30s").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. 5s, 1m30s)", b)
	}
	*d = Duration(v)
	return nil
}

// IsZero lets encoding/json omit a zero duration.
func (d Duration) IsZero() bool { return d == 0 }

// Bytes is a size written as "64Mi", "1G" or a plain number of bytes.
type Bytes int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	{"k", 1e3}, {"B", 1},
}

// ParseBytes reads "64Mi", "1G", "1048576".
func ParseBytes(s string) (Bytes, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	num := s
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			mult, num = u.mult, strings.TrimSuffix(s, u.suffix)
			break
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 || num == "" {
		return 0, fmt.Errorf("invalid size %q (want e.g. 64Mi, 1Gi, 500M)", s)
	}
	return Bytes(n * float64(mult)), nil
}

func (b Bytes) String() string {
	for _, u := range []struct {
		s string
		m int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if b != 0 && int64(b)%u.m == 0 {
			return strconv.FormatInt(int64(b)/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalJSON writes a plain number of bytes so machines need no parser.
func (b Bytes) MarshalJSON() ([]byte, error) { return json.Marshal(int64(b)) }

// UnmarshalJSON accepts a number of bytes or a string with a unit.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	var n int64
	if err := json.Unmarshal(data, &n); err == nil {
		*b = Bytes(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("invalid size %s", data)
	}
	v, err := ParseBytes(s)
	*b = v
	return err
}

// UnmarshalText accepts "64Mi" or "1048576" (YAML scalars).
func (b *Bytes) UnmarshalText(data []byte) error {
	v, err := ParseBytes(string(data))
	*b = v
	return err
}

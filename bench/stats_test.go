package bench

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// quantile is the q-quantile (0..1) of ds by linear interpolation between
// the closest ranks; 0 for no samples.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(pos)
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	frac := pos - float64(lo)
	return s[lo] + time.Duration(frac*float64(s[lo+1]-s[lo]))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summary is one line of a benchmark's log: n, min, median, p90, max in ms.
func summary(name string, ds []time.Duration) string {
	if len(ds) == 0 {
		return fmt.Sprintf("%-12s no samples", name)
	}
	return fmt.Sprintf("%-12s n=%-3d min %7.2f  median %7.2f  p90 %7.2f  max %7.2f ms",
		name, len(ds), ms(slices.Min(ds)), ms(quantile(ds, 0.5)), ms(quantile(ds, 0.9)), ms(slices.Max(ds)))
}

// reportDurations reports the median and p90 of ds as "<name>-ms" and
// "<name>-p90-ms" and logs the summary line.
func reportDurations(b *testing.B, name string, ds []time.Duration) {
	b.Helper()
	if len(ds) == 0 {
		return
	}
	b.ReportMetric(ms(quantile(ds, 0.5)), name+"-ms")
	b.ReportMetric(ms(quantile(ds, 0.9)), name+"-p90-ms")
	b.Log(summary(name, ds))
}

func TestQuantile(t *testing.T) {
	d := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n))
		}
		return out
	}
	tests := []struct {
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{d(7), 0.5, 7},
		{d(7), 0.9, 7},
		{d(3, 1, 2), 0.5, 2},
		{d(4, 1, 3, 2), 0.5, 2}, // halfway between 2 and 3, truncated to the ns
		{d(10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110), 0.9, 100},
		{d(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.9, 9},
		{d(5, 1), 1, 5},
		{d(5, 1), 0, 1},
	}
	for _, tt := range tests {
		if got := quantile(tt.in, tt.q); got != tt.want {
			t.Errorf("quantile(%v, %v) = %v, want %v", tt.in, tt.q, got, tt.want)
		}
	}
	in := d(3, 1, 2)
	quantile(in, 0.5)
	if !slices.Equal(in, d(3, 1, 2)) {
		t.Errorf("quantile sorted its input: %v", in)
	}
	if s := summary("x", d(1e6, 2e6)); !strings.Contains(s, "median    1.50") {
		t.Errorf("summary = %q", s)
	}
}

package cgroup

import (
	"testing"
)

func TestGroupPath(t *testing.T) {
	for _, tc := range []struct {
		parent, id, want string
		ok               bool
	}{
		{"shoal", "web-1", "/shoal/web-1", true},
		{"shoal/node1", "a.b_c", "/shoal/node1/a.b_c", true},
		{"shoal", "", "", false},
		{"shoal", "../etc", "", false},
		{"shoal", "a/b", "", false},
		{"", "x", "", false},
		{"shoal/..", "x", "", false},
		{"/shoal", "x", "", false},
	} {
		got, err := groupPath(tc.parent, tc.id)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("groupPath(%q, %q) = %q, %v; want %q, ok=%v", tc.parent, tc.id, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseOOM(t *testing.T) {
	n, ok := parseOOMControl([]byte("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"))
	if !ok || n != 3 {
		t.Errorf("parseOOMControl = %d, %v; want 3, true", n, ok)
	}
	if _, ok := parseOOMControl([]byte("oom_kill_disable 0\nunder_oom 0\n")); ok {
		t.Errorf("parseOOMControl without oom_kill line (kernel < 4.13) reported a counter")
	}
	if n := parseMemoryEvents([]byte("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")); n != 1 {
		t.Errorf("parseMemoryEvents = %d, want 1", n)
	}
	if n := parseMemoryEvents(nil); n != 0 {
		t.Errorf("parseMemoryEvents(empty) = %d, want 0", n)
	}
}

func TestOOMByFailcnt(t *testing.T) {
	for _, tc := range []struct {
		failcnt, max, limit uint64
		want                bool
	}{
		{0, 10, 10, false},
		{5, 10, 10, true},
		{5, 9, 10, false},
		{5, 9, 0, false},
	} {
		if got := oomByFailcnt(tc.failcnt, tc.max, tc.limit); got != tc.want {
			t.Errorf("oomByFailcnt(%d, %d, %d) = %v, want %v", tc.failcnt, tc.max, tc.limit, got, tc.want)
		}
	}
}

func TestCPUQuota(t *testing.T) {
	for cores, want := range map[float64]int64{0.5: 50000, 2: 200000, 0.001: 1000, 1e14: 1 << 40, 1e300: 1 << 40} {
		if got := cpuQuota(cores); got != want {
			t.Errorf("cpuQuota(%v) = %d, want %d", cores, got, want)
		}
	}
}

func TestCPUSharesAndWeight(t *testing.T) {
	for cores, want := range map[float64][2]uint64{0.5: {512, 20}, 1: {1024, 39}, 2: {2048, 79}, 0.001: {2, 1}} {
		shares := cpuShares(cores)
		if shares != want[0] || cpuWeight(shares) != want[1] {
			t.Errorf("cores %v: shares %d weight %d, want %v", cores, shares, cpuWeight(shares), want)
		}
	}
}

package linux

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidIDMatchesRuntimeRule(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	for _, id := range []string{
		"", "a", "A9", "web.0.deadbeef", "-x", ".x", "_x", "x-", "x/y", "..", "x y", "é",
		strings.Repeat("a", 128), strings.Repeat("a", 129),
	} {
		if got, want := ValidID(id), re.MatchString(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}

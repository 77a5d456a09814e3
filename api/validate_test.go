package api

import (
	"regexp"
	"strings"
	"testing"
)

// The hand-written validators match the rules as regexps state them.
func TestValidatorsMatchTheirRules(t *testing.T) {
	label := regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	user := regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$`)
	for _, s := range []string{"", "a", "web", "web-0", "-web", "web-", "Web", "w_b", "a.b", "0", "1000:1000",
		"nobody", "nobody:nogroup", ":x", "x:", "a:b:c", ".x", "-x", "_x", strings.Repeat("a", 63), strings.Repeat("a", 64),
		strings.Repeat("u", 32), strings.Repeat("u", 33)} {
		if got, want := ValidName(s), label.MatchString(s); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", s, got, want)
		}
		if got, want := validUser(s), user.MatchString(s); got != want {
			t.Errorf("validUser(%q) = %v, want %v", s, got, want)
		}
	}
}

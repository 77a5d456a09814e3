package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips the test unless it runs as root: namespaces, cgroups and
// mounts need it. CI runs these tiers as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, cgroups, mounts)")
	}
}

package e2e

import (
	"testing"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// TestDebianApps runs the scenarios of testdata/debian against a Debian 12
// image made from Debian's packages as users run it (redis-server, nginx,
// mosquitto and their clients; see testutil.BuildDebianImage), whose
// archive is in $DEBIAN, tagged debian-apps:12. The image is built once and
// kept between runs: the first run takes about a minute more.
func TestDebianApps(t *testing.T) {
	testutil.RequireRoot(t)
	runScripts(t, "debian", map[string]string{"DEBIAN": testutil.BuildDebianImage(t)})
}

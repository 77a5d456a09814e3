package linux

import (
	"os"
	"sync"

	"github.com/shoal-edge/shoal/internal/sealexe"
)

// sealedSelf is the handle every container init and exec helper is
// executed from: this binary, sealed against writes (sealexe), made at the
// first start and kept for the process's life. A container sees these
// processes in its pid namespace, and through their /proc/PID/exe it must
// never reach a file it can write.
var sealedSelf = sync.OnceValues(func() (*os.File, error) {
	f, _, err := sealexe.Self()
	return f, err
})

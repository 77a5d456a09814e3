//go:build !amd64 && !arm64 && !arm && !riscv64

package monitor

import "embed"

// No monitor program is built for this architecture.
var programFS embed.FS

const programPath = ""

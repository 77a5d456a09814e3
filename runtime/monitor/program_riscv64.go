package monitor

import "embed"

//go:embed progbin/riscv64
var programFS embed.FS

const programPath = "progbin/riscv64/shoal-monitor"

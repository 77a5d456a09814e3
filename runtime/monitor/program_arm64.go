package monitor

import "embed"

//go:embed progbin/arm64
var programFS embed.FS

const programPath = "progbin/arm64/shoal-monitor"

package monitor

import "embed"

//go:embed progbin/amd64
var programFS embed.FS

const programPath = "progbin/amd64/shoal-monitor"

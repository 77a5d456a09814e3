package monitor

import "embed"

//go:embed progbin/arm
var programFS embed.FS

const programPath = "progbin/arm/shoal-monitor"

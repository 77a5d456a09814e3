//go:build race

package monitor

// raceEnabled: the race detector multiplies memory; RSS bounds do not apply.
const raceEnabled = true

// Command shoal is one binary for every device of an edge container cluster.
package main

import (
	"os"

	"github.com/shoal-edge/shoal/cmd"
)

func main() { os.Exit(cmd.Main(os.Args)) }

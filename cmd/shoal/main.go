// Command shoal is the whole platform in one binary: `shoal serve` runs it,
// `shoal deploy` and friends drive it, and `shoal runtime` can run inside
// each instance, though serve prefers the smaller shoal-runtime binary
// (cmd/shoal-runtime) when it sits beside this one.
package main

import (
	"context"
	"os"

	"github.com/shoal-dev/shoal/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

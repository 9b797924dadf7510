// Command shoal-runtime is the part of shoal that runs beside each node
// process, built on its own so that it links none of serve's bundler,
// store or metrics: as `shoal-runtime runtime`, the same arguments as
// `shoal runtime`, it keeps each instance's supervisor small. serve starts
// it when it sits beside the shoal binary (go build -o bin/ ./cmd/...).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/runtimecmd"
)

func main() {
	root := &cobra.Command{
		Use:           "shoal-runtime",
		Short:         "The supervisor of one shoal instance (serve starts it)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runtimecmd.New())
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "shoal-runtime:", err)
		os.Exit(1)
	}
}

package cli

import (
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/api"
)

func newLogs() *cobra.Command {
	var cf clientFlags
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a project's logs",
		Long: `Print every line the project's functions wrote, each with its time,
instance, invocation id and stream. -f keeps printing new lines.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := cf.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			out := cmd.OutOrStdout()
			err = c.Logs(ctx, args[0], 0, follow, func(l api.LogLine) error {
				inv := l.Invocation
				if inv == "" {
					inv = "-"
				}
				_, err := fmt.Fprintf(out, "%s %s %s %s %s\n", l.Time.Local().Format("15:04:05.000"),
					l.Instance, inv, l.Stream, strings.TrimRight(l.Message, "\n"))
				return err
			})
			if ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	cf.register(cmd)
	return cmd
}

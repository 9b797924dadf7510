package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newRm() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a project with its deployments and logs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := cf.client()
			if err != nil {
				return err
			}
			if err := c.Remove(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}

package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/model"
)

func newEnv() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "env",
		Short: "Set, list and remove a project's environment variables",
		Long: `Set, list and remove a project's environment variables. A deployment
takes the variables as they are when it is made: a change applies from
the project's next deploy. Values are write-only: nothing shows them back.`,
		// A RunE makes cobra check Args, so that an unknown subcommand is
		// an error rather than this help.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newEnvSet(), newEnvLs(), newEnvRm())
	return cmd
}

func newEnvSet() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "set PROJECT NAME [VALUE]",
		Short: "Set an environment variable of a project",
		Long: `Set an environment variable of a project, which need not be deployed
yet; it applies from the project's next deploy. Without VALUE, the value
is read from stdin (one trailing newline dropped), which keeps secrets
out of the shell history:

  shoal env set api DB_URL < db-url.txt`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			project, name := args[0], args[1]
			if err := model.ValidateProjectName(project); err != nil {
				return err
			}
			if err := model.ValidateEnvName(name); err != nil {
				return err
			}
			c, _, err := cf.client()
			if err != nil {
				return err
			}
			var value string
			if len(args) == 3 {
				value = args[2]
			} else {
				in := cmd.InOrStdin()
				if f, ok := in.(*os.File); ok && isTerminal(f) {
					fmt.Fprintf(cmd.ErrOrStderr(), "value of %s (end with Ctrl-D): ", name)
				}
				if value, err = readValue(in); err != nil {
					return err
				}
			}
			if err := model.ValidateEnvValue(value); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := c.SetEnv(cmd.Context(), project, name, value); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "set %s on %s: applied on the next deploy\n", name, project)
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}

// readValue reads a value from r: all of it, less one trailing newline
// ("\n" or "\r\n"), and no more than model.MaxEnvBytes.
func readValue(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, model.MaxEnvBytes+3)) // room for "\r\n"
	if err != nil {
		return "", fmt.Errorf("read value from stdin: %w", err)
	}
	v := string(b)
	if s, ok := strings.CutSuffix(v, "\n"); ok {
		v = strings.TrimSuffix(s, "\r")
	}
	if len(v) > model.MaxEnvBytes {
		return "", fmt.Errorf("value on stdin is over %d bytes", model.MaxEnvBytes)
	}
	return v, nil
}

// isTerminal reports whether f is a terminal (a character device), where a
// user types the value.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func newEnvLs() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "ls PROJECT",
		Short: "List the environment variables of a project, without their values",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := cf.client()
			if err != nil {
				return err
			}
			vs, err := c.Env(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(vs) == 0 {
				fmt.Fprintf(out, "no environment variables on %s\n", args[0])
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tUPDATED")
			for _, v := range vs {
				fmt.Fprintf(tw, "%s\t%s\n", v.Name, v.UpdatedAt.Local().Format("2006-01-02 15:04:05"))
			}
			return tw.Flush()
		},
	}
	cf.register(cmd)
	return cmd
}

func newEnvRm() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "rm PROJECT NAME",
		Short: "Remove an environment variable of a project",
		Long: `Remove an environment variable of a project. The deployment serving now
keeps it: the removal applies from the project's next deploy.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			project, name := args[0], args[1]
			c, _, err := cf.client()
			if err != nil {
				return err
			}
			if err := c.RemoveEnv(cmd.Context(), project, name); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s from %s: applied on the next deploy\n", name, project)
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}

package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/archive"
)

func newDeploy() *cobra.Command {
	var cf clientFlags
	var name string
	cmd := &cobra.Command{
		Use:   "deploy DIR",
		Short: "Deploy a project folder and print its URL",
		Long: `Upload a project folder, build it and make it the project's current
deployment. The project is named after the folder unless --name says
otherwise. A project that fails to build is refused and the previous
deployment keeps serving.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			if info, err := os.Stat(dir); err != nil || !info.IsDir() {
				return fmt.Errorf("%s is not a folder", args[0])
			}
			if name == "" {
				name = filepath.Base(dir)
			}
			c, _, err := cf.client()
			if err != nil {
				return err
			}
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(archive.Pack(dir, pw)) }()
			defer pr.Close()
			d, err := c.Deploy(cmd.Context(), name, pr)
			if err != nil {
				return err
			}
			// stdout is the URL alone, for scripts; the routes go to stderr.
			fmt.Fprintln(cmd.OutOrStdout(), d.URL)
			for _, r := range d.Routes {
				fmt.Fprintf(cmd.ErrOrStderr(), "  %s%s  %s\n", strings.TrimSuffix(d.URL, "/"), r.Path, r.File)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "project name (default: the folder's name)")
	cf.register(cmd)
	return cmd
}

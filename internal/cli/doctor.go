package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/sandbox"
)

func newDoctor() *cobra.Command {
	var (
		cf     clientFlags
		server bool
		node   string
	)
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Tell what isolates instances on this machine",
		Long: `Tell which pieces of isolation instances get on this machine (cgroup,
namespaces, filesystem, uid, seccomp, network, ...) and why any is missing:
what serve --isolation auto would apply, tried for real. With --server,
ask the running server what its instances got instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var iso api.Isolation
			if server {
				c, _, err := cf.client()
				if err != nil {
					return err
				}
				if iso, err = c.Isolation(cmd.Context()); err != nil {
					return err
				}
			} else {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find own binary: %w", err)
				}
				sb, err := sandbox.New(sandbox.Config{Exe: exe, Node: node, Isolation: sandbox.Auto, Probe: true})
				if err != nil {
					return err
				}
				defer sb.Close()
				r := sb.Report()
				iso.Mode = string(r.Mode)
				for _, p := range r.Pieces {
					iso.Pieces = append(iso.Pieces, api.IsolationPiece{Name: p.Name, On: p.On, Detail: p.Detail})
				}
			}
			printIsolation(cmd.OutOrStdout(), iso)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().BoolVar(&server, "server", false, "ask the running server instead of trying this machine")
	cmd.Flags().StringVar(&node, "node", "", "node binary (default: node from PATH)")
	return cmd
}

// printIsolation writes one line per piece, and what strict mode would say.
func printIsolation(w io.Writer, iso api.Isolation) {
	missing := 0
	for _, p := range iso.Pieces {
		mark := "yes"
		if !p.On {
			mark, missing = "NO ", missing+1
		}
		fmt.Fprintf(w, "%s  %-18s %s\n", mark, p.Name, p.Detail)
	}
	switch {
	case missing == 0:
		fmt.Fprintf(w, "every piece applies: serve --isolation strict would start\n")
	default:
		fmt.Fprintf(w, "%d pieces missing: serve --isolation strict would refuse to start\n", missing)
	}
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/apiclient"
	"github.com/shoal-dev/shoal/internal/credentials"
	"github.com/shoal-dev/shoal/internal/runtimecmd"
)

// Main runs the command line args and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "shoal:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "shoal",
		Short:         "shoal runs Node.js functions with in-function concurrency",
		Long:          "shoal is a self-hostable serverless platform for Node.js functions: one instance serves many invocations at once.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServe(), newDeploy(), newLs(), newRm(), newEnv(), newLogs(), newUsage(), runtimecmd.New(), newBench(), newDoctor())
	return root
}

// clientFlags are the flags every client command has.
type clientFlags struct {
	url   string
	token string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.url, "url", "", "server URL (default $SHOAL_URL, else http://127.0.0.1:3000)")
	cmd.Flags().StringVar(&f.token, "token", "", "control API token (default $SHOAL_TOKEN, else the one serve recorded for this URL)")
}

// client returns the API client the flags describe.
func (f *clientFlags) client() (*apiclient.Client, string, error) {
	url := f.url
	if url == "" {
		url = os.Getenv("SHOAL_URL")
	}
	if url == "" {
		url = "http://127.0.0.1:3000"
	}
	token := f.token
	if token == "" {
		token = os.Getenv("SHOAL_TOKEN")
	}
	if token == "" {
		t, err := credentials.Token(url)
		if err != nil {
			return nil, "", err
		}
		token = t
	}
	if token == "" {
		return nil, "", fmt.Errorf("no token for %s: start shoal serve on this machine, or pass --token", url)
	}
	return apiclient.New(url, token), url, nil
}

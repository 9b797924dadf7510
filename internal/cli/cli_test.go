package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// run runs Main with args and returns its exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// commands returns every command under root, root included.
func commands(root *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{root}
	for _, c := range root.Commands() {
		out = append(out, commands(c)...)
	}
	return out
}

// path is the command's arguments to Main: its path without "shoal".
func path(c *cobra.Command) []string {
	return strings.Fields(c.CommandPath())[1:]
}

func TestCommands_Help(t *testing.T) {
	root := newRoot(io.Discard, io.Discard)
	all := commands(root)
	names := map[string]bool{}
	for _, c := range all {
		names[c.Name()] = true
	}
	for _, want := range []string{"serve", "deploy", "ls", "rm", "logs", "runtime"} {
		if !names[want] {
			t.Errorf("no %s command among %v", want, names)
		}
	}
	for _, c := range all {
		name := strings.Join(append([]string{"shoal"}, path(c)...), "_")
		t.Run(name, func(t *testing.T) {
			if c.Short == "" {
				t.Errorf("%q has no Short", c.CommandPath())
			}
			code, out, errOut := run(t, append(path(c), "--help")...)
			if code != 0 || errOut != "" {
				t.Fatalf("--help: got exit %d, stderr %q; want 0 and nothing", code, errOut)
			}
			desc := c.Long
			if desc == "" {
				desc = c.Short
			}
			if !strings.Contains(out, desc) {
				t.Errorf("help %q does not hold the description %q", out, desc)
			}
			if !strings.Contains(out, "Usage:") || !strings.Contains(out, c.UseLine()) {
				t.Errorf("help %q has no usage line %q", out, c.UseLine())
			}
			c.Flags().VisitAll(func(f *pflag.Flag) {
				if !strings.Contains(out, "--"+f.Name) {
					t.Errorf("help does not mention --%s:\n%s", f.Name, out)
				}
				if f.Shorthand != "" && !strings.Contains(out, "-"+f.Shorthand+", --"+f.Name) {
					t.Errorf("help does not mention -%s:\n%s", f.Shorthand, out)
				}
				if f.Usage == "" {
					t.Errorf("--%s has no usage text", f.Name)
				}
			})
		})
	}
}

func TestRoot_HelpListsCommands(t *testing.T) {
	code, out, _ := run(t, "--help")
	if code != 0 {
		t.Fatalf("got exit %d, want 0", code)
	}
	for _, c := range newRoot(io.Discard, io.Discard).Commands() {
		if listed := strings.Contains(out, "  "+c.Name()+" "); listed == c.Hidden {
			t.Errorf("%s (hidden %v) listed: %v; help:\n%s", c.Name(), c.Hidden, listed, out)
		}
	}
}

// noServer points the client commands at a closed port with no token
// anywhere: not in flags, $SHOAL_TOKEN or the credentials file.
func noServer(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	t.Setenv("SHOAL_TOKEN", "")
	t.Setenv("SHOAL_URL", "http://127.0.0.1:1")
}

func TestMain_Errors(t *testing.T) {
	noServer(t)
	project := t.TempDir()
	file := filepath.Join(t.TempDir(), "index.js")
	if err := os.WriteFile(file, []byte("export default () => 'hi'"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"unknown_command", []string{"frobnicate"}, []string{"unknown command", "frobnicate"}},
		{"unknown_flag", []string{"ls", "--bogus"}, []string{"unknown flag", "--bogus"}},
		{"rm_without_name", []string{"rm"}, []string{"accepts 1 arg"}},
		{"ls_with_args", []string{"ls", "extra"}, []string{"unknown command", "extra"}},
		{"deploy_file", []string{"deploy", file}, []string{file + " is not a folder"}},
		{"deploy_missing", []string{"deploy", filepath.Join(project, "nope")}, []string{"nope is not a folder"}},
		{"runtime_without_flags", []string{"runtime", "--tunnel-fd", "9"}, []string{"required flag", "bundle", "dir", "id"}},
		{"spare_without_dir", []string{"runtime", "--spare", "--tunnel-fd", "9"}, []string{"required flag", "dir"}},
		{"runtime_without_tunnel", []string{"runtime", "--id", "i", "--bundle", "b", "--dir", "d"}, []string{"tunnel", "tunnel-fd"}},
		{"deploy_no_token", []string{"deploy", project}, []string{"token", "http://127.0.0.1:1"}},
		{"ls_no_token", []string{"ls"}, []string{"token", "http://127.0.0.1:1"}},
		{"rm_no_token", []string{"rm", "app"}, []string{"token", "http://127.0.0.1:1"}},
		{"logs_no_token", []string{"logs", "app"}, []string{"token", "http://127.0.0.1:1"}},
		{"logs_follow_no_token", []string{"logs", "-f", "app"}, []string{"token"}},
		{"ls_url_flag_no_token", []string{"ls", "--url", "http://127.0.0.1:2"}, []string{"token", "http://127.0.0.1:2"}},
		{"ls_server_down", []string{"ls", "--token", "t0k"}, []string{"127.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkFails(t, tt.args, tt.want)
		})
	}
}

// checkFails runs the CLI with args and checks that it fails with one line
// on stderr that starts with "shoal: " and mentions each of want, and
// nothing on stdout.
func checkFails(t *testing.T, args, want []string) {
	t.Helper()
	code, out, errOut := run(t, args...)
	if code == 0 {
		t.Fatalf("got exit 0, stdout %q; want an error", out)
	}
	if !strings.HasPrefix(errOut, "shoal: ") {
		t.Errorf("stderr %q does not start with shoal: ", errOut)
	}
	if strings.Count(errOut, "\n") != 1 {
		t.Errorf("stderr %q is not one line", errOut)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr %q does not mention %q", errOut, w)
		}
	}
	if out != "" {
		t.Errorf("stdout %q, want nothing", out)
	}
}

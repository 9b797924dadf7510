package cli

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/shoal-dev/shoal/internal/model"
)

func TestEnv_Errors(t *testing.T) {
	noServer(t)
	tests := []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"set_without_name", []string{"env", "set", "app"}, []string{"accepts between 2 and 3 arg(s)"}},
		{"set_too_many", []string{"env", "set", "app", "A", "1", "2"}, []string{"accepts between 2 and 3 arg(s)"}},
		{"ls_without_project", []string{"env", "ls"}, []string{"accepts 1 arg"}},
		{"rm_without_name", []string{"env", "rm", "app"}, []string{"accepts 2 arg(s)"}},
		{"unknown_subcommand", []string{"env", "frobnicate"}, []string{"unknown command", "frobnicate"}},
		// Names are checked before anything is read or sent.
		{"set_bad_name", []string{"env", "set", "app", "1X", "v"}, []string{`env name "1X": use letters, digits and _, not starting with a digit`}},
		{"set_bad_name_no_value", []string{"env", "set", "app", "DB-URL"}, []string{`env name "DB-URL"`}},
		{"set_reserved", []string{"env", "set", "app", "shoal_token", "v"}, []string{`"shoal_token"`, "reserved"}},
		{"set_reserved_path", []string{"env", "set", "app", "PATH", "/bin"}, []string{`"PATH"`, "reserved"}},
		{"set_bad_project", []string{"env", "set", "App", "A", "v"}, []string{`project name "App"`}},
		{"set_nul_value", []string{"env", "set", "--token", "t0k", "app", "A", "a\x00b"}, []string{"A: env value", "NUL"}},
		{"set_no_token", []string{"env", "set", "app", "A", "v"}, []string{"token", "http://127.0.0.1:1"}},
		{"set_stdin_no_token", []string{"env", "set", "app", "A"}, []string{"token", "http://127.0.0.1:1"}},
		{"ls_no_token", []string{"env", "ls", "app"}, []string{"token", "http://127.0.0.1:1"}},
		{"rm_no_token", []string{"env", "rm", "app", "A"}, []string{"token", "http://127.0.0.1:1"}},
		{"set_server_down", []string{"env", "set", "--token", "t0k", "app", "A", "v"}, []string{"127.0.0.1:1"}},
		{"ls_server_down", []string{"env", "ls", "--token", "t0k", "app"}, []string{"127.0.0.1:1"}},
		{"rm_server_down", []string{"env", "rm", "--token", "t0k", "app", "A"}, []string{"127.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkFails(t, tt.args, tt.want)
		})
	}
}

func TestReadValue(t *testing.T) {
	largest := strings.Repeat("x", model.MaxEnvBytes)
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{"empty", "", "", ""},
		{"no_newline", "s3cret", "s3cret", ""},
		{"newline_trimmed", "s3cret\n", "s3cret", ""},
		{"crlf_trimmed", "s3cret\r\n", "s3cret", ""},
		{"only_one_newline_trimmed", "s3cret\n\n", "s3cret\n", ""},
		{"lone_newline", "\n", "", ""},
		{"inner_newlines_kept", "-----BEGIN-----\nabc\n-----END-----\n", "-----BEGIN-----\nabc\n-----END-----", ""},
		{"spaces_kept", "  a b  \n", "  a b  ", ""},
		{"cr_alone_kept", "a\r", "a\r", ""},
		{"largest", largest, largest, ""},
		{"largest_with_crlf", largest + "\r\n", largest, ""},
		{"over", largest + "x", "", "over 65536 bytes"},
		{"over_with_newline", largest + "x\n", "", "over 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readValue(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readValue: got %d bytes, %v; want an error saying %q", len(got), err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("readValue: got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	t.Run("read_error", func(t *testing.T) {
		boom := errors.New("boom")
		if _, err := readValue(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom))); !errors.Is(err, boom) {
			t.Errorf("readValue: got %v, want %v", err, boom)
		}
	})
}

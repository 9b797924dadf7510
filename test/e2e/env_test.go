package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testutil"
)

// envHandler answers with the variables A and B, and NODE_ENV, as the
// function sees them; JSON.stringify leaves out the ones not set.
const envHandler = `export default (req, res) => res.end(JSON.stringify({a: process.env.A, b: process.env.B, nodeEnv: process.env.NODE_ENV}))`

// envCLI runs the CLI against s with stdin ("" for none) and fails the
// test if it fails; it returns stdout.
func envCLI(t *testing.T, s *testutil.Serve, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := s.CLICommand(ctx, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("shoal %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// envNames returns the first column of the output of shoal env ls.
func envNames(out string) []string {
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// controlAPI sends one request to s's control API with its token.
func controlAPI(t *testing.T, s *testutil.Serve, method, path, body string) reply {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(s.DataDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Authorization": {"Bearer " + strings.TrimSpace(string(token))}}
	if body != "" {
		h.Set("content-type", "application/json")
	}
	return mustSendWith(t, method, s.URL+api.Prefix+path, h, body)
}

// TestEnv_CLIAndAPI sets, lists and removes variables with the CLI and the
// API, without deploying.
func TestEnv_CLIAndAPI(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})

	// A project need not be deployed to have variables.
	if got, want := envCLI(t, s, "", "env", "ls", "envy"), "no environment variables on envy\n"; got != want {
		t.Errorf("env ls of a new project: got %q, want %q", got, want)
	}
	if got, want := envCLI(t, s, "", "env", "set", "envy", "A", "from-arg"), "set A on envy: applied on the next deploy\n"; got != want {
		t.Errorf("env set: got %q, want %q", got, want)
	}
	if got, want := envCLI(t, s, "s3cret value\n", "env", "set", "envy", "B"), "set B on envy: applied on the next deploy\n"; got != want {
		t.Errorf("env set from stdin: got %q, want %q", got, want)
	}

	t.Run("ls_lists_names_not_values", func(t *testing.T) {
		out := envCLI(t, s, "", "env", "ls", "envy")
		if got, want := envNames(out), []string{"NAME", "A", "B"}; !reflect.DeepEqual(got, want) {
			t.Errorf("env ls: got names %v, want %v; output:\n%s", got, want, out)
		}
		if header, _, _ := strings.Cut(out, "\n"); !strings.Contains(header, "UPDATED") {
			t.Errorf("env ls header %q has no UPDATED", header)
		}
		for _, secret := range []string{"from-arg", "s3cret"} {
			if strings.Contains(out, secret) {
				t.Errorf("env ls shows the value %q:\n%s", secret, out)
			}
		}
	})
	t.Run("api_lists_names_not_values", func(t *testing.T) {
		r := controlAPI(t, s, "GET", "/projects/envy/env", "")
		var got []map[string]any
		if err := json.Unmarshal(r.body, &got); r.status != 200 || err != nil {
			t.Fatalf("GET env: %d %q (%v), want 200 and a list", r.status, r.body, err)
		}
		if len(got) != 2 || got[0]["name"] != "A" || got[1]["name"] != "B" {
			t.Errorf("GET env: got %s, want A then B", r.body)
		}
		for _, v := range got {
			if len(v) != 2 || v["updatedAt"] == nil {
				t.Errorf("GET env entry %v: want only name and updatedAt", v)
			}
		}
		if strings.Contains(string(r.body), "from-arg") || strings.Contains(string(r.body), "s3cret") {
			t.Errorf("GET env shows a value: %s", r.body)
		}
	})

	t.Run("bad_names_are_refused", func(t *testing.T) {
		tests := []struct {
			name, key string
			want      string // in the CLI's stderr and the API's message
		}{
			{"leading_digit", "1X", `env name "1X": use letters, digits and _, not starting with a digit`},
			{"dash", "DB-URL", `env name "DB-URL"`},
			{"reserved_prefix", "SHOAL_TUNNEL_TOKEN", "reserved"},
			{"reserved_prefix_lower_case", "shoal_x", "reserved"},
			{"path", "PATH", "reserved"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				out, errOut, err := s.CLI(ctx, "env", "set", "envy", tt.key, "v")
				if err == nil || !strings.Contains(errOut, tt.want) {
					t.Errorf("shoal env set envy %s: %v %q %q, want refused saying %q", tt.key, err, out, errOut, tt.want)
				}
				r := controlAPI(t, s, "PUT", "/projects/envy/env/"+tt.key, `{"value":"v"}`)
				var e api.Error
				if err := json.Unmarshal(r.body, &e); err != nil || r.status != 400 || e.Error.Code != api.CodeBadRequest {
					t.Fatalf("PUT env/%s: %d %q, want 400 %s", tt.key, r.status, r.body, api.CodeBadRequest)
				}
				if !strings.Contains(e.Error.Message, tt.want) {
					t.Errorf("PUT env/%s: message %q, want it to say %q", tt.key, e.Error.Message, tt.want)
				}
			})
		}
	})
	t.Run("api_refuses_bad_body", func(t *testing.T) {
		r := controlAPI(t, s, "PUT", "/projects/envy/env/C", `{"value":`)
		if r.status != 400 || !strings.Contains(string(r.body), api.CodeBadRequest) {
			t.Errorf("PUT malformed JSON: %d %q, want 400 %s", r.status, r.body, api.CodeBadRequest)
		}
	})
	t.Run("too_large_is_refused", func(t *testing.T) {
		// B and A already take a few bytes: a 64 KiB value goes over.
		big := strings.Repeat("x", 64<<10)
		r := controlAPI(t, s, "PUT", "/projects/envy/env/BIG", `{"value":"`+big+`"}`)
		if r.status != 400 || !strings.Contains(string(r.body), "64 KiB") {
			t.Errorf("PUT a 64 KiB value: %d %.200q, want 400 naming the 64 KiB limit", r.status, r.body)
		}
	})

	t.Run("rm", func(t *testing.T) {
		if got, want := envCLI(t, s, "", "env", "rm", "envy", "A"), "removed A from envy: applied on the next deploy\n"; got != want {
			t.Errorf("env rm: got %q, want %q", got, want)
		}
		if got, want := envNames(envCLI(t, s, "", "env", "ls", "envy")), []string{"NAME", "B"}; !reflect.DeepEqual(got, want) {
			t.Errorf("env ls after rm A: got names %v, want %v", got, want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, errOut, err := s.CLI(ctx, "env", "rm", "envy", "A"); err == nil || !strings.Contains(errOut, "not found") {
			t.Errorf("second env rm: %v %q, want a not found error", err, errOut)
		}
		r := controlAPI(t, s, "DELETE", "/projects/envy/env/A", "")
		if r.status != 404 || !strings.Contains(string(r.body), api.CodeNotFound) {
			t.Errorf("DELETE a missing variable: %d %q, want 404 %s", r.status, r.body, api.CodeNotFound)
		}
	})

	// Removing the project removes its variables: a project deployed again
	// under the name starts without them.
	t.Run("project_rm_removes_env", func(t *testing.T) {
		s.Deploy(testutil.WriteProject(t, "envy", map[string]string{"index.mjs": envHandler}))
		envCLI(t, s, "", "rm", "envy")
		if got, want := envCLI(t, s, "", "env", "ls", "envy"), "no environment variables on envy\n"; got != want {
			t.Errorf("env ls after shoal rm: got %q, want %q", got, want)
		}
	})
}

// TestEnv_AppliedOnNextDeploy checks that a deployment takes the project's
// variables as they are when it is made, and keeps them.
func TestEnv_AppliedOnNextDeploy(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	dir := testutil.WriteProject(t, "envy", map[string]string{"index.mjs": envHandler})

	// seen is what the function answers: the variables it sees.
	seen := func(url string) map[string]string {
		t.Helper()
		code, body, _ := testutil.Get(t, url)
		var got map[string]string
		if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil {
			t.Fatalf("GET %s: %d %q (%v), want 200 and JSON", url, code, body, err)
		}
		return got
	}
	check := func(step, url string, want map[string]string) {
		t.Helper()
		if got := seen(url); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: function sees %v, want %v", step, got, want)
		}
	}

	envCLI(t, s, "", "env", "set", "envy", "A", "from-arg")
	envCLI(t, s, "s3cret value\n", "env", "set", "envy", "B")
	url := s.Deploy(dir)
	check("first deploy", url, map[string]string{"a": "from-arg", "b": "s3cret value", "nodeEnv": "production"})

	envCLI(t, s, "", "env", "set", "envy", "A", "v2")
	envCLI(t, s, "", "env", "set", "envy", "NODE_ENV", "staging") // users may override it
	check("set, not yet deployed", url, map[string]string{"a": "from-arg", "b": "s3cret value", "nodeEnv": "production"})
	// The same folder again: only the variables changed.
	s.Deploy(dir)
	check("redeployed after set", url, map[string]string{"a": "v2", "b": "s3cret value", "nodeEnv": "staging"})

	envCLI(t, s, "", "env", "rm", "envy", "B")
	check("removed, not yet deployed", url, map[string]string{"a": "v2", "b": "s3cret value", "nodeEnv": "staging"})
	s.Deploy(dir)
	check("redeployed after rm", url, map[string]string{"a": "v2", "nodeEnv": "staging"})
}

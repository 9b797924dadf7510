package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

func TestScaling_IdleInstancesStopAndComeBack(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--keep-alive", "1s"}})
	url := s.Deploy(testutil.WriteProject(t, "idle", map[string]string{"index.mjs": pidHandler}))
	_, first, _ := testutil.Get(t, url)
	testutil.Eventually(t, 15*time.Second, "instance stopped after keep-alive", func() bool {
		return len(testutil.InstancePids(s.DataDir)) == 0
	})
	code, second, _ := testutil.Get(t, url)
	if code != 200 {
		t.Fatalf("request after scale to zero: %d %s", code, second)
	}
	if first == second {
		t.Errorf("served by pid %s again, want a new instance after scale to zero", second)
	}
}

// TestServe_InstancesRunTheSmallRuntime: with shoal-runtime beside shoal,
// as the tests build them, each instance's supervisor is shoal-runtime,
// not serve's own binary.
func TestServe_InstancesRunTheSmallRuntime(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "small", map[string]string{"index.mjs": pidHandler}))
	if code, body, _ := testutil.Get(t, url); code != 200 {
		t.Fatalf("GET: %d %s", code, body)
	}
	runtimes := testutil.RuntimePids(s.DataDir)
	if len(runtimes) == 0 {
		t.Fatal("no instance runtime after an invocation")
	}
	for _, pid := range runtimes {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatal(err)
		}
		argv0, _, _ := strings.Cut(string(b), "\x00")
		if filepath.Base(argv0) != "shoal-runtime" {
			t.Errorf("runtime %d runs %s, want shoal-runtime", pid, argv0)
		}
	}
}

func TestScaling_MinInstancesStayStarted(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--keep-alive", "1s"}})
	s.Deploy(testutil.WriteProject(t, "warm", map[string]string{
		"index.mjs":  pidHandler,
		"shoal.json": `{ "minInstances": 2 }`,
	}))
	testutil.Eventually(t, 20*time.Second, "two instances started without traffic", func() bool {
		return len(testutil.RuntimePids(s.DataDir)) == 2
	})
	// Well past the keep-alive, both are still there.
	time.Sleep(3 * time.Second)
	if n := len(testutil.RuntimePids(s.DataDir)); n != 2 {
		t.Errorf("%d instances after the keep-alive, want minInstances 2", n)
	}
}

func TestServe_RestartKeepsDeployments(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	config := filepath.Join(t.TempDir(), "config")
	s := testutil.StartServe(t, testutil.ServeOptions{DataDir: data, ConfigHome: config})
	s.Deploy(testutil.WriteProject(t, "keep", map[string]string{"index.mjs": `export default (req, res) => res.end('kept')`}))
	s.Stop()
	s2 := testutil.StartServe(t, testutil.ServeOptions{DataDir: data, ConfigHome: config})
	code, body, _ := testutil.Get(t, s2.URL+"/keep/")
	if code != 200 || body != "kept" {
		t.Errorf("after restart: %d %q, want 200 \"kept\"", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, errOut, err := s2.CLI(ctx, "ls")
	if err != nil || !strings.Contains(out, "keep") {
		t.Errorf("shoal ls after restart: %v %q %q", err, out, errOut)
	}
}

func TestDeploy_BrokenProjectsAreRefused(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	good := testutil.WriteProject(t, "app", map[string]string{"index.mjs": `export default (req, res) => res.end('v1')`})
	url := s.Deploy(good)
	tests := []struct {
		name  string
		files map[string]string
		want  []string // parts of the error message
	}{
		{"syntax_error", map[string]string{"index.mjs": "export default (req, res) => {\n  res.end('x'\n}\n"}, []string{"index.mjs:3"}},
		{"no_entry", map[string]string{"main.js": "module.exports = () => {}"}, []string{"no entry"}},
		{"bad_shoal_json", map[string]string{"index.mjs": "export default () => {}", "shoal.json": "{\n  \"concurency\": true\n}\n"}, []string{"shoal.json:2", "concurency"}},
		{"bad_shoal_json_syntax", map[string]string{"index.mjs": "export default () => {}", "shoal.json": "{\n  \"maxDuration\": 10,\n}\n"}, []string{"shoal.json:3"}},
		{"missing_import", map[string]string{"index.mjs": "import x from 'nope';\nexport default x;\n"}, []string{"index.mjs:1", "nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testutil.WriteProject(t, "app", tt.files)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, errOut, err := s.CLI(ctx, "deploy", dir)
			if err == nil {
				t.Fatal("deploy of a broken project succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("deploy error %q does not name %q", errOut, w)
				}
			}
			if code, body, _ := testutil.Get(t, url); code != 200 || body != "v1" {
				t.Errorf("previous deployment after a refused deploy: %d %q, want 200 \"v1\"", code, body)
			}
		})
	}
}

func TestDeploy_NewDeploymentReplacesOld(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "app", map[string]string{"index.mjs": `export default (req, res) => res.end('v1')`}))
	if _, body, _ := testutil.Get(t, url); body != "v1" {
		t.Fatalf("v1 body %q", body)
	}
	s.Deploy(testutil.WriteProject(t, "app", map[string]string{"index.mjs": `export default (req, res) => res.end('v2')`}))
	if _, body, _ := testutil.Get(t, url); body != "v2" {
		t.Errorf("after redeploy body %q, want v2", body)
	}
	// The old deployment's idle instance goes away.
	testutil.Eventually(t, 10*time.Second, "one instance left", func() bool {
		return len(testutil.RuntimePids(s.DataDir)) == 1
	})
}

func TestServe_SIGTERMFinishesInFlight(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "drain", map[string]string{"index.mjs": pidHandler}))
	testutil.Get(t, url) // warm
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(url + "?ms=1500")
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	time.Sleep(300 * time.Millisecond)
	s.Signal(syscall.SIGTERM)
	if code := <-done; code != 200 {
		t.Errorf("in-flight invocation during SIGTERM: %d, want 200", code)
	}
	select {
	case <-s.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
	// serve stops its instances before it exits; allow for reaping.
	testutil.Eventually(t, 5*time.Second, "no instance left after serve exited", func() bool {
		return len(testutil.InstancePids(s.DataDir)) == 0
	})
}

func TestServe_SIGKILLLeavesNoInstances(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	s.Deploy(testutil.WriteProject(t, "orphan", map[string]string{
		"index.mjs":  pidHandler,
		"shoal.json": `{ "minInstances": 2 }`,
	}))
	testutil.Eventually(t, 20*time.Second, "instances started", func() bool {
		return len(testutil.InstancePids(s.DataDir)) == 4 // 2 runtimes + 2 nodes
	})
	// The folder of the instances' scratch folders, from a runtime's --dir.
	scratch := ""
	for _, pid := range testutil.InstancePids(s.DataDir) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(b), "\x00")
		if i := slices.Index(args, "--dir"); i >= 0 && i+1 < len(args) {
			scratch = filepath.Dir(args[i+1])
		}
	}
	if scratch == "" {
		t.Fatal("no runtime's command line names its scratch folder")
	}
	s.Signal(syscall.SIGKILL)
	<-s.Exited()
	testutil.Eventually(t, 10*time.Second, "no runtime or node outlives a killed serve", func() bool {
		return len(testutil.InstancePids(s.DataDir)) == 0
	})
	// A killed serve cannot clean up; the next serve to start does.
	if _, err := os.Stat(scratch); err != nil {
		t.Fatalf("the killed serve's scratch folder %s: %v, want it left until a serve starts", scratch, err)
	}
	testutil.StartServe(t, testutil.ServeOptions{})
	if _, err := os.Stat(scratch); !os.IsNotExist(err) {
		t.Errorf("the killed serve's scratch folder %s after another serve started: %v, want it removed", scratch, err)
	}
}

func TestControlAPI_NeedsToken(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tests := []struct {
		name string
		env  []string
		args []string
	}{
		{"wrong_token_flag", nil, []string{"ls", "--token", "nope"}},
		{"wrong_token_env", []string{"SHOAL_TOKEN=nope"}, []string{"ls"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := s.CLICommand(ctx, tt.args...)
			cmd.Env = append(cmd.Env, tt.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "token") {
				t.Errorf("shoal %v with a wrong token: %v %q, want refused", tt.args, err, out)
			}
		})
	}
	// Without the recorded credentials the CLI has no token at all.
	cmd := s.CLICommand(ctx, "ls")
	cmd.Env = append(cmd.Env, "XDG_CONFIG_HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("shoal ls with no token succeeded: %q", out)
	}
	req, _ := http.NewRequest("GET", s.URL+"/_shoal/api/v1/projects", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("control API without token: %d, want 401", resp.StatusCode)
	}
}

func TestFunction_CannotSeeTheToken(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "snoop", map[string]string{
		"index.mjs": `export default (req, res) => res.end(JSON.stringify(process.env))`,
	}))
	_, env, _ := testutil.Get(t, url)
	token, err := os.ReadFile(filepath.Join(s.DataDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(env, strings.TrimSpace(string(token))) || strings.Contains(env, "SHOAL_TUNNEL_TOKEN") {
		t.Errorf("function environment holds a platform secret: %s", env)
	}
	for _, want := range []string{`"NODE_ENV":"production"`, `"TZ":"UTC"`} {
		if !strings.Contains(env, want) {
			t.Errorf("function environment %s lacks %s", env, want)
		}
	}
}

func TestCLI_NameRmAndLs(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	dir := testutil.WriteProject(t, "folder-name", map[string]string{"index.mjs": `export default (req, res) => { console.log('hi'); res.end('named') }`})
	url := s.Deploy(dir, "--name", "other")
	if want := s.URL + "/other/"; url != want {
		t.Errorf("deploy --name printed %q, want %q", url, want)
	}
	if code, body, _ := testutil.Get(t, url); code != 200 || body != "named" {
		t.Fatalf("GET %s: %d %q", url, code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _, err := s.CLI(ctx, "ls")
	if err != nil || !strings.Contains(out, "other") || strings.Contains(out, "folder-name") {
		t.Errorf("ls = %q, %v; want the project named other", out, err)
	}
	if out, errOut, err := s.CLI(ctx, "rm", "other"); err != nil {
		t.Fatalf("rm: %v %s %s", err, out, errOut)
	}
	code, body, _ := testutil.Get(t, url)
	if code != 404 || !strings.Contains(body, "DEPLOYMENT_NOT_FOUND") {
		t.Errorf("after rm: %d %q, want 404 DEPLOYMENT_NOT_FOUND", code, body)
	}
	if out, _, _ := s.CLI(ctx, "ls"); strings.Contains(out, "other") {
		t.Errorf("ls after rm still lists it: %q", out)
	}
	if _, errOut, err := s.CLI(ctx, "rm", "other"); err == nil || !strings.Contains(errOut, "not found") {
		t.Errorf("second rm: %v %q, want a not found error", err, errOut)
	}
	if _, errOut, err := s.CLI(ctx, "logs", "other"); err == nil || !strings.Contains(errOut, "not found") {
		t.Errorf("logs after rm: %v %q, want a not found error", err, errOut)
	}
	testutil.Eventually(t, 10*time.Second, "removed project's instance stopped", func() bool {
		return len(testutil.InstancePids(s.DataDir)) == 0
	})
}

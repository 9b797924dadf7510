package e2e

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/shoal-dev/shoal/internal/testutil"
)

func TestProjects_EntriesAndShapes(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	tests := []struct {
		name  string
		files map[string]string
		path  string
		want  string
	}{
		{"esm_node_style", map[string]string{"index.mjs": `export default (req, res) => res.end('esm ' + req.url)`}, "/a?b=1", "esm /a?b=1"},
		{"cjs_module_exports", map[string]string{"index.js": `module.exports = (req, res) => res.end('cjs')`}, "/", "cjs"},
		{"cjs_file", map[string]string{"index.cjs": `module.exports = function (req, res) { res.end('cjs file') }`}, "/", "cjs file"},
		{"typescript", map[string]string{"index.ts": "const greet = (n: string): string => 'ts ' + n;\nexport default (req: any, res: any) => res.end(greet('ok'));\n"}, "/", "ts ok"},
		{"package_main", map[string]string{"package.json": `{"main": "src/app.js"}`, "src/app.js": `module.exports = (req, res) => res.end('main')`}, "/", "main"},
		{"web_style", map[string]string{"index.mjs": `export default { fetch(request) { return new Response('web ' + new URL(request.url).pathname, { headers: { 'x-a': '1' } }) } }`}, "/p", "web /p"},
		{"node_modules_import", map[string]string{
			"index.mjs":                       `import shout from 'shout'; import { join } from 'pathy'; export default (req, res) => res.end(shout('dep') + join())`,
			"node_modules/shout/package.json": `{"name": "shout", "main": "index.js"}`,
			"node_modules/shout/index.js":     `const path = require('node:path'); module.exports = (s) => s.toUpperCase() + path.sep;`,
			"node_modules/pathy/package.json": `{"name": "pathy", "type": "module", "exports": "./index.js"}`,
			"node_modules/pathy/index.js":     `export function join() { return '+esm' }`,
		}, "/", "DEP/+esm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := s.Deploy(testutil.WriteProject(t, strings.ReplaceAll(tt.name, "_", "-"), tt.files))
			code, body, _ := testutil.Get(t, strings.TrimSuffix(url, "/")+tt.path)
			if code != 200 || body != tt.want {
				t.Errorf("got %d %q, want 200 %q", code, body, tt.want)
			}
		})
	}
}

func TestGateway_HostRoutingAndHTTP2(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	s.Deploy(testutil.WriteProject(t, "proto", map[string]string{
		"index.mjs": `export default (req, res) => res.end(req.url)`,
	}))
	// HTTP/2 with prior knowledge (h2c), Host NAME.localhost.
	h2 := &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
	req, _ := http.NewRequest("GET", s.URL+"/some/path?q=1", nil)
	req.Host = "proto.localhost"
	resp, err := h2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != "/some/path?q=1" {
		t.Errorf("h2c via Host: proto %d, %d %q; want HTTP/2 200 \"/some/path?q=1\"", resp.ProtoMajor, resp.StatusCode, body)
	}
}

func TestScaling_QueueTimeoutIsThrottled(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--queue-timeout", "300ms", "--max-instances", "1"}})
	url := s.Deploy(testutil.WriteProject(t, "slowq", map[string]string{
		"index.mjs":  pidHandler,
		"shoal.json": `{ "concurrency": false }`,
	}))
	testutil.Get(t, url)
	held := make(chan int, 1)
	go func() { code, _, _ := testutil.Get(t, url+"?ms=3000"); held <- code }()
	time.Sleep(time.Second) // let the first invocation take the only slot
	code, body, resp := testutil.Get(t, url)
	if code != 503 || !strings.Contains(body, "FUNCTION_THROTTLED") || resp.Header.Get("retry-after") == "" {
		t.Errorf("waiting past the queue timeout: %d %q, want 503 FUNCTION_THROTTLED with retry-after", code, body)
	}
	if code := <-held; code != 200 {
		t.Errorf("held invocation: %d, want 200", code)
	}
}

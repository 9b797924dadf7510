package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// request is mustSendWith for tables: the headers as a map, and the reply's
// status, body and headers apart.
func request(t *testing.T, method, url string, header map[string]string, body string) (int, string, http.Header) {
	t.Helper()
	h := http.Header{}
	for k, v := range header {
		h.Set(k, v)
	}
	r := mustSendWith(t, method, url, h, body)
	return r.status, string(r.body), r.header
}

// The export shapes of Vercel's Node.js functions all serve.
func TestVercel_ExportShapes(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	tests := []struct {
		name       string
		files      map[string]string
		method     string
		wantStatus int
		want       string
		wantHeader map[string]string
	}{
		{"method_get", map[string]string{"index.mjs": methodsModule}, "GET", 200, "get", nil},
		{"method_post", map[string]string{"index.mjs": methodsModule}, "POST", 200, "post", nil},
		{"method_head_falls_back_to_get", map[string]string{"index.mjs": methodsModule}, "HEAD", 200, "", nil},
		{"method_not_exported", map[string]string{"index.mjs": methodsModule}, "PUT", 405, "", map[string]string{"allow": "GET, HEAD, POST"}},
		{"cjs_method_exports", map[string]string{"index.js": `exports.GET = () => new Response('cjs get');`}, "GET", 200, "cjs get", nil},
		{"http_server", map[string]string{"index.mjs": `import http from 'node:http';
export default http.createServer((req, res) => res.end('server'));`}, "GET", 200, "server", nil},
		{"listen_intercepted", map[string]string{"index.mjs": `import http from 'node:http';
const server = http.createServer((req, res) => res.end('listened on ' + server.address().port));
server.listen(3000, () => console.log('listening'));`}, "GET", 200, "listened on 3000", nil},
		{"koa_style_callback", map[string]string{"index.mjs": `class App { callback() { return (req, res) => res.end('callback') } }
export default new App();`}, "GET", 200, "callback", nil},
		{"nested_default", map[string]string{"index.mjs": `export default { default: { default: (req, res) => res.end('nested') } };`}, "GET", 200, "nested", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := s.Deploy(testutil.WriteProject(t, strings.ReplaceAll(tt.name, "_", "-"), tt.files))
			code, body, header := request(t, tt.method, url, nil, "")
			if code != tt.wantStatus || body != tt.want {
				t.Errorf("%s: got %d %q, want %d %q", tt.method, code, body, tt.wantStatus, tt.want)
			}
			for k, v := range tt.wantHeader {
				if got := header.Get(k); got != v {
					t.Errorf("%s: %s %q, want %q", tt.method, k, got, v)
				}
			}
		})
	}
}

const methodsModule = `
export function GET(request) { return new Response('get'); }
export async function POST(request) { return new Response(await request.text() || 'post'); }
`

// A module that exports nothing that serves is refused at deploy, with a
// message that says what to export.
func TestVercel_NoUsableExportFailsDeploy(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	for name, src := range map[string]string{
		"named-only": `export const handler = (req, res) => res.end('x');`,
		"number":     `export default 42;`,
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, errOut, err := s.CLI(ctx, "deploy", testutil.WriteProject(t, name, map[string]string{"index.mjs": src}))
			if err == nil {
				t.Fatal("deploy succeeded")
			}
			if !strings.Contains(errOut, "export a function (req, res)") {
				t.Errorf("deploy error %q does not say what to export", errOut)
			}
		})
	}
}

const helpersModule = `
export default async function handler(req, res) {
  const path = req.url.split('?')[0];
  switch (path) {
    case '/query': return res.json(req.query);
    case '/cookies': return res.json(req.cookies);
    case '/body': {
      const b = req.body;
      return res.json({ body: b === undefined ? null : Buffer.isBuffer(b) ? 'buffer:' + b.toString() : b });
    }
    case '/caught':
      try { req.body; } catch (err) { return res.status(422).send('caught ' + err.message + ' ' + err.statusCode); }
      return res.send('no error');
    case '/uncaught': return res.send(typeof req.body);
    case '/raw': {
      const parsed = req.body;
      const chunks = [];
      for await (const c of req) chunks.push(c);
      return res.json({ parsed, raw: Buffer.concat(chunks).toString(), rawBody: req.rawBody.toString() });
    }
    case '/ondata': {
      req.body;
      let n = 0;
      return new Promise((resolve) => {
        req.on('data', (c) => { n += c.length; });
        req.on('end', () => { res.send(String(n)); resolve(); });
      });
    }
    case '/web': {
      const { Readable } = await import('node:stream');
      const text = await new Response(Readable.toWeb(req)).text();
      return res.send(text.length + ' ' + typeof req.body);
    }
    case '/send': return res.status(201).send('<p>hi</p>');
    case '/buffer': return res.send(Buffer.from('bytes'));
    case '/number': return res.send(42);
    case '/nocontent': return res.status(204).send('dropped');
    case '/redirect': return res.redirect('/elsewhere');
    case '/redirect301': return res.redirect(301, '/moved');
    case '/set-cookies': res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']); return res.send('ok');
  }
  res.status(404).send('no route ' + path);
}
`

// Vercel's request and response helpers, and a body that stays readable
// after they parsed it.
func TestVercel_Helpers(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	base := strings.TrimSuffix(s.Deploy(testutil.WriteProject(t, "helpers", map[string]string{"index.mjs": helpersModule})), "/")
	jsonCT := map[string]string{"content-type": "application/json"}
	big := strings.Repeat("x", 1<<20)
	tests := []struct {
		name       string
		method     string
		path       string
		header     map[string]string
		body       string
		wantStatus int
		want       string
		wantHeader map[string]string
	}{
		{"query", "GET", "/query?a=1&a=2&b=x", nil, "", 200, `{"a":["1","2"],"b":"x"}`, map[string]string{"content-type": "application/json; charset=utf-8"}},
		{"cookies", "GET", "/cookies", map[string]string{"cookie": `a=1; b=%20x; a=2; c="q"`}, "", 200, `{"a":"1","b":" x","c":"q"}`, nil},
		{"body_json", "POST", "/body", jsonCT, `{"x":[1,2]}`, 200, `{"body":{"x":[1,2]}}`, nil},
		{"body_json_charset", "POST", "/body", map[string]string{"content-type": "application/json; charset=utf-8"}, `"s"`, 200, `{"body":"s"}`, nil},
		{"body_empty_json", "POST", "/body", jsonCT, "", 200, `{"body":{}}`, nil},
		{"body_urlencoded", "POST", "/body", map[string]string{"content-type": "application/x-www-form-urlencoded"}, "a=1&b=two+words", 200, `{"body":{"a":"1","b":"two words"}}`, nil},
		{"body_text", "POST", "/body", map[string]string{"content-type": "text/plain"}, "hello", 200, `{"body":"hello"}`, nil},
		{"body_octet_stream", "POST", "/body", map[string]string{"content-type": "application/octet-stream"}, "raw", 200, `{"body":"buffer:raw"}`, nil},
		{"body_no_content_type", "POST", "/body", nil, "what", 200, `{"body":null}`, nil},
		{"invalid_json_caught", "POST", "/caught", jsonCT, "{nope", 422, "caught Invalid JSON 400", nil},
		{"raw_stream_after_parse", "POST", "/raw", jsonCT, `{"k":"v"}`, 200, `{"parsed":{"k":"v"},"raw":"{\"k\":\"v\"}","rawBody":"{\"k\":\"v\"}"}`, nil},
		{"data_events_after_parse", "POST", "/ondata", map[string]string{"content-type": "text/plain"}, big, 200, fmt.Sprint(len(big)), nil},
		{"web_stream_of_body", "POST", "/web", map[string]string{"content-type": "text/plain"}, big, 200, fmt.Sprint(len(big)) + " string", nil},
		{"send_html", "GET", "/send", nil, "", 201, "<p>hi</p>", map[string]string{"content-type": "text/html; charset=utf-8", "content-length": "9"}},
		{"send_head", "HEAD", "/send", nil, "", 201, "", map[string]string{"content-length": "9"}},
		{"send_buffer", "GET", "/buffer", nil, "", 200, "bytes", map[string]string{"content-type": "application/octet-stream"}},
		{"send_number", "GET", "/number", nil, "", 200, "42", map[string]string{"content-type": "application/json; charset=utf-8"}},
		{"send_204", "GET", "/nocontent", nil, "", 204, "", map[string]string{"content-type": ""}},
		{"redirect", "GET", "/redirect", nil, "", 307, "", map[string]string{"location": "/elsewhere"}},
		{"redirect_status", "GET", "/redirect301", nil, "", 301, "", map[string]string{"location": "/moved"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, header := request(t, tt.method, base+tt.path, tt.header, tt.body)
			if code != tt.wantStatus || body != tt.want {
				t.Errorf("got %d %q, want %d %q", code, body, tt.wantStatus, tt.want)
			}
			for k, v := range tt.wantHeader {
				if got := header.Get(k); got != v {
					t.Errorf("%s %q, want %q", k, got, v)
				}
			}
		})
	}

	t.Run("invalid_json_uncaught", func(t *testing.T) {
		code, body, header := request(t, "POST", base+"/uncaught", jsonCT, "{nope")
		if code != 400 || !strings.Contains(body, "INVALID_JSON_BODY") || header.Get("x-shoal-id") == "" {
			t.Errorf("got %d %q (id %q), want 400 INVALID_JSON_BODY with the request id", code, body, header.Get("x-shoal-id"))
		}
	})
	t.Run("etag_and_304", func(t *testing.T) {
		_, _, first := request(t, "GET", base+"/buffer", nil, "")
		tag := first.Get("etag")
		if !strings.HasPrefix(tag, `W/"`) {
			t.Fatalf("etag %q, want a weak one", tag)
		}
		code, body, _ := request(t, "GET", base+"/buffer", map[string]string{"if-none-match": tag}, "")
		if code != 304 || body != "" {
			t.Errorf("with If-None-Match: %d %q, want 304 and no body", code, body)
		}
	})
	t.Run("set_cookies", func(t *testing.T) {
		_, _, header := request(t, "GET", base+"/set-cookies", nil, "")
		if got := header.Values("set-cookie"); len(got) != 2 || got[0] != "a=1; Path=/" || got[1] != "b=2; Path=/" {
			t.Errorf("set-cookie %q, want two", got)
		}
	})
	t.Run("helpers_off", func(t *testing.T) {
		url := s.Deploy(testutil.WriteProject(t, "plain", map[string]string{
			"index.mjs":  `export default (req, res) => res.end(typeof req.query + ' ' + typeof res.json + ' ' + typeof req.rawBody)`,
			"shoal.json": `{ "helpers": false }`,
		}))
		if code, body, _ := request(t, "POST", url, map[string]string{"content-type": "text/plain"}, "b"); code != 200 || body != "undefined undefined undefined" {
			t.Errorf("helpers off: %d %q", code, body)
		}
	})
}

// answersBeforeWaitUntil warms the function with a GET of warmURL, then
// checks that a GET of url answers want within 1.5 s: before the 2 s of work
// its handler leaves to waitUntil, with room for a loaded machine.
func answersBeforeWaitUntil(t *testing.T, warmURL, url string, header map[string]string, want string) {
	t.Helper()
	request(t, "GET", warmURL, nil, "") // the timed request starts no instance
	start := time.Now()
	if code, body, _ := request(t, "GET", url, header, ""); code != 200 || body != want {
		t.Fatalf("got %d %q, want 200 %q", code, body, want)
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Errorf("response took %s; it should not wait for waitUntil", el)
	}
}

// waitUntil through the request context @vercel/functions reads: the
// response goes out at once, the work runs on and counts in metering, and a
// rejection is only logged.
func TestVercel_RequestContextWaitUntil(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "later", map[string]string{
		"index.mjs": `
export default (req, res) => {
  const ctx = globalThis[Symbol.for('@vercel/request-context')].get();
  ctx.waitUntil(new Promise((r) => setTimeout(r, 2000)).then(() => console.log('after ' + ctx.headers['x-tag'])));
  ctx.waitUntil(Promise.reject(new Error('background failed')));
  res.end('sent');
};`,
		"shoal.json": `{ "memory": 1024 }`,
	}))
	answersBeforeWaitUntil(t, url, url, map[string]string{"x-tag": "t1"}, "sent")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testutil.Eventually(t, 10*time.Second, "waitUntil logs and metering", func() bool {
		out, _, _ := s.CLI(ctx, "logs", "later")
		u := usage(ctx, t, s, "later")
		return strings.Contains(out, "after t1") && strings.Contains(out, "background failed") && u.ClassicGBSeconds >= 1.9
	})
	if code, body, _ := request(t, "GET", url, nil, ""); code != 200 || body != "sent" {
		t.Errorf("after a rejected waitUntil: %d %q", code, body)
	}
}

// What user code keeps in its own AsyncLocalStorage in one request is never
// seen by another, concurrent or on the same connection after it.
func TestVercel_AsyncLocalStorageIsolation(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "als", map[string]string{
		"index.mjs": `
import { AsyncLocalStorage } from 'node:async_hooks';
const als = new AsyncLocalStorage();
export default async (req, res) => {
  const seen = als.getStore() ?? null;
  als.enterWith(req.url);
  await new Promise((r) => setTimeout(r, 20));
  res.end(JSON.stringify({ seen, mine: als.getStore() }));
};`,
	}))
	check := func(i int) error {
		path := fmt.Sprintf("/?n=%d", i)
		code, body, _ := request(t, "GET", strings.TrimSuffix(url, "/")+path, nil, "")
		var got struct {
			Seen *string
			Mine string
		}
		if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil {
			return fmt.Errorf("request %d: %d %q", i, code, body)
		}
		if got.Seen != nil || got.Mine != path {
			return fmt.Errorf("request %d: %s, want to see nothing and keep %q", i, body, path)
		}
		return nil
	}
	for i := range 10 { // one after another: the runtime reuses its connection to node
		if err := check(i); err != nil {
			t.Error(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() { errs <- check(100 + i) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// waitUntil work is bounded by maxDuration: past it, it no longer counts in
// the invocation, and the logs say so.
func TestVercel_WaitUntilBoundedByMaxDuration(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "overlong", map[string]string{
		"index.mjs": `
export default {
  fetch(request, ctx) {
    ctx.waitUntil(new Promise((r) => setTimeout(r, 4000)));
    return new Response('sent');
  },
};`,
		"shoal.json": `{ "maxDuration": 1, "memory": 1024 }`,
	}))
	if code, body, _ := request(t, "GET", url, nil, ""); code != 200 || body != "sent" {
		t.Fatalf("got %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testutil.Eventually(t, 10*time.Second, "the log line giving up on waitUntil", func() bool {
		logs, _, _ := s.CLI(ctx, "logs", "overlong")
		return strings.Contains(logs, "still pending at maxDuration")
	})
	// The invocation counts about 1 s, not the 4 s its waitUntil ran.
	testutil.Eventually(t, 5*time.Second, "the waitUntil tail metered", func() bool {
		return usage(ctx, t, s, "overlong").ClassicGBSeconds >= 0.9
	})
	time.Sleep(3500 * time.Millisecond) // past the promise's own end
	// Generous: a slow instance start counts too; without the bound it is 4.
	if u := usage(ctx, t, s, "overlong"); u.ClassicGBSeconds > 2.5 {
		t.Errorf("classic GB-s %.2f, want about 1 (maxDuration), not 4", u.ClassicGBSeconds)
	}
}

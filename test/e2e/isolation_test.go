package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// modeHandler is a Node style handler whose ?mode= chooses what it does:
//
//	pid        answer the process id (the default)
//	slow       count itself as active, wait 800 ms, answer the process id
//	active     answer how many slow invocations are in flight
//	throw      throw synchronously
//	reject     return a promise that rejects a moment later
//	unhandled  reject a promise nobody awaits, then answer the process id
//	exit       process.exit(1)
const modeHandler = instanceJS + `
let active = 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export default function (req, res) {
  const mode = new URL(req.url, 'http://x').searchParams.get('mode');
  switch (mode) {
    case 'slow':
      active++;
      return sleep(800).then(() => { active--; res.end(instance); });
    case 'active':
      res.end(String(active));
      return;
    case 'throw':
      throw new Error('sync boom');
    case 'reject':
      return sleep(10).then(() => { throw new Error('async boom'); });
    case 'unhandled':
      Promise.reject(new Error('x'));
      res.end(instance);
      return;
    case 'exit':
      process.exit(1);
    default:
      res.end(instance);
  }
}
`

// reply is one whole response as a test sees it.
type reply struct {
	status  int
	header  http.Header
	body    []byte
	elapsed time.Duration // from sending to the end of the body
	end     time.Time     // when the body ended
}

// send makes one request and reads the whole response. It returns an error
// rather than failing the test, so goroutines may call it. accept "" sends
// no accept header.
func send(ctx context.Context, method, url, accept string, body io.Reader) (reply, error) {
	h := http.Header{}
	if accept != "" {
		h.Set("accept", accept)
	}
	return sendWith(ctx, method, url, h, body)
}

// noRedirects is the tests' client: a redirect is a response to check.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// sendWith is send with the request headers header.
func sendWith(ctx context.Context, method, url string, header http.Header, body io.Reader) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return reply{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := noRedirects.Do(req)
	if err != nil {
		return reply{elapsed: time.Since(start), end: time.Now()}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, body: b, elapsed: time.Since(start), end: time.Now()}
	if err != nil {
		return r, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return r, nil
}

// mustSendWith is sendWith for the test goroutine, bounded by 30 s.
func mustSendWith(t *testing.T, method, url string, header http.Header, body string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := sendWith(ctx, method, url, header, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mustSend is send for the test goroutine, bounded by timeout.
func mustSend(t *testing.T, timeout time.Duration, method, url, accept string, body io.Reader) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := send(ctx, method, url, accept, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkPlatformError reports how r differs from a JSON platform error with
// status and one of codes whose id is the x-shoal-id header.
func checkPlatformError(r reply, status int, codes ...string) error {
	var errs []error
	if r.status != status {
		errs = append(errs, fmt.Errorf("status %d, want %d", r.status, status))
	}
	id := r.header.Get("x-shoal-id")
	if id == "" {
		errs = append(errs, errors.New("no x-shoal-id header"))
	}
	var pe struct {
		Error struct{ Code, Message, ID string } `json:"error"`
	}
	if err := json.Unmarshal(r.body, &pe); err != nil {
		errs = append(errs, fmt.Errorf("body %q is not a JSON platform error: %v", r.body, err))
		return errors.Join(errs...)
	}
	found := false
	for _, c := range codes {
		found = found || pe.Error.Code == c
	}
	if !found {
		errs = append(errs, fmt.Errorf("code %q, want one of %v", pe.Error.Code, codes))
	}
	if pe.Error.ID != id {
		errs = append(errs, fmt.Errorf("body id %q, header x-shoal-id %q, want the same", pe.Error.ID, id))
	}
	if pe.Error.Message == "" {
		errs = append(errs, errors.New("empty message"))
	}
	return errors.Join(errs...)
}

// sendAll sends n concurrent GETs of url, accepting JSON, each bounded by
// timeout. Their replies arrive on the returned channel; a request that got
// no response has status -1 and the error as its body.
func sendAll(url string, n int, timeout time.Duration) <-chan reply {
	out := make(chan reply, n)
	for range n {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			r, err := send(ctx, "GET", url, "application/json", nil)
			if err != nil {
				r.status = -1
				r.body = []byte(err.Error())
			}
			out <- r
		}()
	}
	return out
}

// startSlow sends n ?mode=slow invocations and waits until the instance
// counts all n in flight. Their replies arrive on the returned channel.
func startSlow(t *testing.T, url string, n int) <-chan reply {
	t.Helper()
	out := sendAll(url+"?mode=slow", n, 15*time.Second)
	want := strconv.Itoa(n)
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%d slow invocations in flight", n), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := send(ctx, "GET", url+"?mode=active", "", nil)
		return err == nil && r.status == 200 && string(r.body) == want
	})
	return out
}

func TestIsolation_ThrowFailsOnlyItsInvocation(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "throws", map[string]string{"index.mjs": modeHandler}))
	warm := mustSend(t, 30*time.Second, "GET", url, "", nil)
	if warm.status != 200 {
		t.Fatalf("warm-up: %d %s", warm.status, warm.body)
	}
	pid := string(warm.body)
	tests := []struct {
		name string
		mode string
	}{
		{"sync_throw", "throw"},
		{"async_rejection", "reject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slow := startSlow(t, url, 10)
			r := mustSend(t, 10*time.Second, "GET", url+"?mode="+tt.mode, "application/json", nil)
			failedAt := time.Now()
			if err := checkPlatformError(r, 500, "FUNCTION_INVOCATION_FAILED"); err != nil {
				t.Errorf("?mode=%s: %v", tt.mode, err)
			}
			for range 10 {
				sr := <-slow
				if sr.status != 200 || string(sr.body) != pid {
					t.Errorf("slow invocation beside the failure: %d %q, want 200 %q", sr.status, sr.body, pid)
				}
				if sr.end.Before(failedAt) {
					t.Errorf("a slow invocation ended before the failure was answered: it was not in flight beside it")
				}
			}
			after := mustSend(t, 10*time.Second, "GET", url, "", nil)
			if after.status != 200 || string(after.body) != pid {
				t.Errorf("next request: %d %q, want 200 from the same process %q", after.status, after.body, pid)
			}
		})
	}
}

func TestIsolation_UnhandledRejectionHarmsNothing(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "unhandled", map[string]string{"index.mjs": modeHandler}))
	warm := mustSend(t, 30*time.Second, "GET", url, "", nil)
	if warm.status != 200 {
		t.Fatalf("warm-up: %d %s", warm.status, warm.body)
	}
	pid := string(warm.body)
	slow := startSlow(t, url, 10)
	r := mustSend(t, 10*time.Second, "GET", url+"?mode=unhandled", "", nil)
	answeredAt := time.Now()
	if r.status != 200 || string(r.body) != pid {
		t.Errorf("?mode=unhandled: %d %q, want 200 %q", r.status, r.body, pid)
	}
	for range 10 {
		sr := <-slow
		if sr.status != 200 || string(sr.body) != pid {
			t.Errorf("slow invocation beside the rejection: %d %q, want 200 %q", sr.status, sr.body, pid)
		}
		if sr.end.Before(answeredAt) {
			t.Errorf("a slow invocation ended before the rejecting one was answered: it was not in flight beside it")
		}
	}
	// The process survived: the next request finds the same one.
	after := mustSend(t, 10*time.Second, "GET", url, "", nil)
	if after.status != 200 || string(after.body) != pid {
		t.Errorf("next request: %d %q, want 200 from the same process %q", after.status, after.body, pid)
	}
}

func TestIsolation_NeverRespondingTimesOut(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	tests := []struct {
		name    string
		handler string
	}{
		// A Node style handler that returns no promise may answer later, from
		// a callback; this one never does.
		{"node_style", "export default function (req, res) {\n  if (req.url.includes('warm')) res.end('warm');\n}\n"},
		// Nor does one whose promise resolved: it too may answer later.
		{"node_style_async", "export default async function (req, res) {\n  if (req.url.includes('warm')) return res.end('warm');\n  await null;\n}\n"},
		{"web_style", "export default {\n  fetch(request) {\n    if (request.url.includes('warm')) return new Response('warm');\n    return new Promise(() => {});\n  },\n};\n"},
	}
	urls := make([]string, len(tests))
	for i, tt := range tests {
		urls[i] = s.Deploy(testutil.WriteProject(t, strings.ReplaceAll(tt.name, "_", "-"), map[string]string{
			"index.mjs":  tt.handler,
			"shoal.json": `{ "maxDuration": 1 }`,
		}))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Warm, so the measure below is the deadline, not a cold start.
			if w := mustSend(t, 30*time.Second, "GET", urls[i]+"?warm", "", nil); w.status != 200 {
				t.Fatalf("warm-up: %d %s", w.status, w.body)
			}
			r := mustSend(t, 15*time.Second, "GET", urls[i], "application/json", nil)
			if err := checkPlatformError(r, 504, "FUNCTION_INVOCATION_TIMEOUT"); err != nil {
				t.Error(err)
			}
			if r.elapsed < 900*time.Millisecond || r.elapsed >= 5*time.Second {
				t.Errorf("answered after %s, want about maxDuration (1 s): at least 0.9 s and under 5 s", r.elapsed)
			}
			if !strings.HasPrefix(tt.name, "node_style") {
				return
			}
			var logs string
			testutil.Eventually(t, 10*time.Second, "a log record says no response was sent", func() bool {
				logs, _, _ = s.CLI(t.Context(), "logs", strings.ReplaceAll(tt.name, "_", "-"))
				return strings.Contains(logs, "No response was sent") && strings.Contains(logs, "timed out after 1s")
			})
		})
	}
}

func TestIsolation_EndingWithoutResponseIs502(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	tests := []struct {
		name    string
		handler string
	}{
		{"web_fetch_returns_undefined", "export default {\n  async fetch(request) {\n    return undefined;\n  },\n};\n"},
		{"web_fetch_returns_undefined_sync", "export default {\n  fetch(request) {},\n};\n"},
	}
	urls := make([]string, len(tests))
	for i, tt := range tests {
		urls[i] = s.Deploy(testutil.WriteProject(t, strings.ReplaceAll(tt.name, "_", "-"), map[string]string{"index.mjs": tt.handler}))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustSend(t, 30*time.Second, "GET", urls[i], "application/json", nil)
			if err := checkPlatformError(r, 502, "NO_RESPONSE_FROM_FUNCTION"); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestIsolation_ProcessExitFailsItsInvocationsAndIsReplaced(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "exits", map[string]string{"index.mjs": modeHandler}))
	warm := mustSend(t, 30*time.Second, "GET", url, "", nil)
	if warm.status != 200 {
		t.Fatalf("warm-up: %d %s", warm.status, warm.body)
	}
	pid := string(warm.body)
	const n = 5
	slow := startSlow(t, url, n)

	// Clients keep sending plain requests from before the exit until each is
	// served by a new process, so that some arrive while the old instance is
	// going away. A request sent after the exit was answered never reaches
	// the dead node: it must be served, not fail.
	var exitAnswered atomic.Int64 // unix ns; 0 until the exit is answered
	const clients = 4
	sweep := make(chan []string, clients) // each client's failures
	for range clients {
		go func() {
			var failures []string
			defer func() { sweep <- failures }()
			deadline := time.Now().Add(20 * time.Second)
			for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
				sent := time.Now().UnixNano()
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				r, err := send(ctx, "GET", url, "application/json", nil)
				cancel()
				after := exitAnswered.Load()
				switch {
				case err == nil && r.status == 200 && string(r.body) != pid:
					return // a new process serves
				case after == 0 || sent < after:
					// Sent before the exit was answered: it may have reached the
					// node that exited; whatever it got is allowed.
				case err != nil:
					failures = append(failures, err.Error())
				case r.status != 200:
					failures = append(failures, fmt.Sprintf("%d %q (x-shoal-id %q)", r.status, r.body, r.header.Get("x-shoal-id")))
				default:
					failures = append(failures, "served by pid "+pid+", the process that exited")
				}
			}
			failures = append(failures, "never served by a new process")
		}()
	}

	r := mustSend(t, 10*time.Second, "GET", url+"?mode=exit", "application/json", nil)
	exitAnswered.Store(time.Now().UnixNano())
	if err := checkPlatformError(r, 500, "FUNCTION_INVOCATION_FAILED"); err != nil {
		t.Errorf("?mode=exit: %v", err)
	}
	for range n {
		sr := <-slow
		if sr.status == -1 {
			t.Errorf("slow invocation on the exiting process: %s, want a 500 response", sr.body)
			continue
		}
		if err := checkPlatformError(sr, 500, "FUNCTION_INVOCATION_FAILED"); err != nil {
			t.Errorf("slow invocation on the exiting process: %v", err)
		}
		if sr.elapsed > 5*time.Second {
			t.Errorf("slow invocation on the exiting process answered after %s, want promptly", sr.elapsed)
		}
	}
	for range clients {
		for _, f := range <-sweep {
			t.Errorf("request sent after the exit was answered: %s, want 200 from a new process", f)
		}
	}
	// And the next request is served by the new process too.
	next := mustSend(t, 30*time.Second, "GET", url, "application/json", nil)
	if next.status != 200 || string(next.body) == pid {
		t.Errorf("next request: %d %q, want 200 from a process other than %s", next.status, next.body, pid)
	}
}

// abortHandlers log "aborted ID" (Web style) or "closed ID" (Node style)
// when the client goes away before the response; ?warm answers at once.
var abortHandlers = []struct {
	name, handler, logged string
}{
	{"web_style", `
export default {
  async fetch(request) {
    if (request.url.includes('warm')) return new Response('warm');
    const id = request.headers.get('x-shoal-id');
    await new Promise((r) => request.signal.addEventListener('abort', r));
    console.log('aborted ' + id);
    return new Response('too late');
  },
};
`, "aborted"},
	{"node_style", `
export default function (req, res) {
  if (req.url.includes('warm')) return res.end('warm');
  const id = req.headers['x-shoal-id'];
  let logged = false;
  const closed = () => {
    if (!logged && !res.writableFinished) {
      logged = true;
      console.log('closed ' + id);
    }
  };
  res.on('close', closed);
  req.on('close', closed);
}
`, "closed"},
}

func TestIsolation_ClientDisconnectAbortsInvocation(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	for _, tt := range abortHandlers {
		t.Run(tt.name, func(t *testing.T) {
			name := "abort-" + strings.ReplaceAll(tt.name, "_", "-")
			// maxDuration far beyond the poll below: only the disconnect can
			// end the invocation in time.
			url := s.Deploy(testutil.WriteProject(t, name, map[string]string{
				"index.mjs":  tt.handler,
				"shoal.json": `{ "maxDuration": 60 }`,
			}))
			if w := mustSend(t, 30*time.Second, "GET", url+"?warm", "", nil); w.status != 200 {
				t.Fatalf("warm-up: %d %s", w.status, w.body)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			r, err := send(ctx, "GET", url, "", nil)
			cancel()
			if err == nil {
				t.Fatalf("request answered %d %q before the client went away", r.status, r.body)
			}
			// Each line of shoal logs: time instance invocation stream message.
			lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer lcancel()
			var line []string // the fields of the line the handler logged
			testutil.Eventually(t, 10*time.Second, "the handler logged "+tt.logged+" ID", func() bool {
				out, _, _ := s.CLI(lctx, "logs", name)
				for _, l := range strings.Split(out, "\n") {
					f := strings.SplitN(l, " ", 5)
					if len(f) == 5 && f[3] == "stdout" && strings.HasPrefix(f[4], tt.logged+" ") {
						line = f
						return true
					}
				}
				return false
			})
			// The line belongs to the invocation it names, like every line the
			// handler writes while serving it.
			if id := strings.TrimPrefix(line[4], tt.logged+" "); line[2] != id {
				t.Errorf("%q is tagged with invocation %q, want %q", line[4], line[2], id)
			}
		})
	}
}

func TestGateway_UnknownProjectIs404(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	s.Deploy(testutil.WriteProject(t, "exists", map[string]string{"index.mjs": `export default (req, res) => res.end('here')`}))
	tests := []struct {
		name  string
		path  string
		codes []string
	}{
		{"unknown_project", "/nope/", []string{"DEPLOYMENT_NOT_FOUND", "NOT_FOUND"}},
		{"unknown_project_subpath", "/nope/a/b", []string{"DEPLOYMENT_NOT_FOUND", "NOT_FOUND"}},
		{"root", "/", []string{"NOT_FOUND"}},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/json", func(t *testing.T) {
			r := mustSend(t, 10*time.Second, "GET", s.URL+tt.path, "application/json", nil)
			if err := checkPlatformError(r, 404, tt.codes...); err != nil {
				t.Error(err)
			}
		})
		t.Run(tt.name+"/text", func(t *testing.T) {
			r := mustSend(t, 10*time.Second, "GET", s.URL+tt.path, "", nil)
			if r.status != 404 {
				t.Errorf("status %d, want 404", r.status)
			}
			id := r.header.Get("x-shoal-id")
			if id == "" {
				t.Errorf("no x-shoal-id header")
			}
			if ct := r.header.Get("content-type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("content-type %q, want text/plain", ct)
			}
			body := string(r.body)
			found := false
			for _, c := range tt.codes {
				found = found || strings.Contains(body, "Code: "+c+"\n")
			}
			if !found || !strings.Contains(body, id) || json.Valid(r.body) {
				t.Errorf("body %q, want text naming one of %v and the id %q", body, tt.codes, id)
			}
		})
	}
}

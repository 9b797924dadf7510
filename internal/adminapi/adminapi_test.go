package adminapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

const token = "s3cret-token"

// fakeControl is a Control made of functions; a nil function fails the call.
type fakeControl struct {
	deploy    func(ctx context.Context, project string, archive io.Reader) (api.Deployment, error)
	projects  func(ctx context.Context) ([]api.Project, error)
	remove    func(ctx context.Context, project string) error
	logs      func(ctx context.Context, project string, after int64, limit int, wait bool) ([]api.LogLine, error)
	usage     func(ctx context.Context, project string, since, until time.Time) (api.Usage, error)
	setEnv    func(ctx context.Context, project, name, value string) error
	env       func(ctx context.Context, project string) ([]api.EnvVar, error)
	removeEnv func(ctx context.Context, project, name string) error
	isolation api.Isolation
}

func (c *fakeControl) Isolation() api.Isolation { return c.isolation }

func (c *fakeControl) SetEnv(ctx context.Context, project, name, value string) error {
	if c.setEnv == nil {
		return errUnexpected
	}
	return c.setEnv(ctx, project, name, value)
}

func (c *fakeControl) Env(ctx context.Context, project string) ([]api.EnvVar, error) {
	if c.env == nil {
		return nil, errUnexpected
	}
	return c.env(ctx, project)
}

func (c *fakeControl) RemoveEnv(ctx context.Context, project, name string) error {
	if c.removeEnv == nil {
		return errUnexpected
	}
	return c.removeEnv(ctx, project, name)
}

func (c *fakeControl) Usage(ctx context.Context, project string, since, until time.Time) (api.Usage, error) {
	if c.usage == nil {
		return api.Usage{}, errUnexpected
	}
	return c.usage(ctx, project, since, until)
}

var errUnexpected = errors.New("unexpected call")

func (c *fakeControl) Deploy(ctx context.Context, project string, archive io.Reader) (api.Deployment, error) {
	if c.deploy == nil {
		return api.Deployment{}, errUnexpected
	}
	return c.deploy(ctx, project, archive)
}

func (c *fakeControl) Projects(ctx context.Context) ([]api.Project, error) {
	if c.projects == nil {
		return nil, errUnexpected
	}
	return c.projects(ctx)
}

func (c *fakeControl) Remove(ctx context.Context, project string) error {
	if c.remove == nil {
		return errUnexpected
	}
	return c.remove(ctx, project)
}

func (c *fakeControl) Logs(ctx context.Context, project string, after int64, limit int, wait bool) ([]api.LogLine, error) {
	if c.logs == nil {
		return nil, errUnexpected
	}
	return c.logs(ctx, project, after, limit, wait)
}

// allRoutes returns a control whose every method answers with err (nil:
// success), counting the calls.
func allRoutes(err error, calls *int) *fakeControl {
	return &fakeControl{
		deploy: func(context.Context, string, io.Reader) (api.Deployment, error) {
			*calls++
			return api.Deployment{ID: "d1", Project: "app"}, err
		},
		projects: func(context.Context) ([]api.Project, error) {
			*calls++
			return nil, err
		},
		remove: func(context.Context, string) error {
			*calls++
			return err
		},
		logs: func(context.Context, string, int64, int, bool) ([]api.LogLine, error) {
			*calls++
			return nil, err
		},
		setEnv: func(context.Context, string, string, string) error {
			*calls++
			return err
		},
		env: func(context.Context, string) ([]api.EnvVar, error) {
			*calls++
			return nil, err
		},
		removeEnv: func(context.Context, string, string) error {
			*calls++
			return err
		},
	}
}

// routes are the API's routes, with a body they accept and the status of a
// success.
var routes = []struct {
	name, method, path, body string
	ok                       int
}{
	{"deploy", "POST", "/projects/app/deployments", "archive", http.StatusCreated},
	{"projects", "GET", "/projects", "", http.StatusOK},
	{"delete", "DELETE", "/projects/app", "", http.StatusNoContent},
	{"logs", "GET", "/projects/app/logs", "", http.StatusOK},
	{"env_set", "PUT", "/projects/app/env/DB_URL", `{"value":"postgres://db"}`, http.StatusNoContent},
	{"env", "GET", "/projects/app/env", "", http.StatusOK},
	{"env_delete", "DELETE", "/projects/app/env/DB_URL", "", http.StatusNoContent},
}

func request(method, path, authorization string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, "http://127.0.0.1:3000"+api.Prefix+path, body)
	if authorization != "" {
		r.Header.Set("authorization", authorization)
	}
	return r
}

// decodeError decodes an api.Error body, failing the test if it is not one.
func decodeError(t *testing.T, w *httptest.ResponseRecorder) api.ErrorBody {
	t.Helper()
	if ct := w.Header().Get("content-type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content-type %q, want application/json", ct)
	}
	var e api.Error
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	return e.Error
}

func TestNew_Panics(t *testing.T) {
	tests := []struct {
		name  string
		token string
		ctl   Control
	}{
		{"no_token", "", &fakeControl{}},
		{"no_control", token, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%q, %v) did not panic", tt.token, tt.ctl)
				}
			}()
			New(tt.token, tt.ctl, nil)
		})
	}
}

func TestHandler_Auth(t *testing.T) {
	auths := []struct {
		name, header string
		ok           bool
	}{
		{"missing", "", false},
		{"empty_bearer", "Bearer ", false},
		{"wrong", "Bearer nope", false},
		{"prefix_of_token", "Bearer " + token[:len(token)-1], false},
		{"token_plus_suffix", "Bearer " + token + "x", false},
		{"no_scheme", token, false},
		{"basic_scheme", "Basic " + token, false},
		{"right", "Bearer " + token, true},
	}
	for _, rt := range routes {
		for _, a := range auths {
			t.Run(rt.name+"/"+a.name, func(t *testing.T) {
				calls := 0
				h := New(token, allRoutes(nil, &calls), nil)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, request(rt.method, rt.path, a.header, strings.NewReader(rt.body)))
				if a.ok {
					if w.Code != rt.ok || calls == 0 {
						t.Errorf("got %d after %d calls, want %d after the control was called; body %q", w.Code, calls, rt.ok, w.Body)
					}
					return
				}
				if w.Code != http.StatusUnauthorized {
					t.Fatalf("got %d, want 401; body %q", w.Code, w.Body)
				}
				if calls != 0 {
					t.Errorf("control called %d times without the token, want 0", calls)
				}
				if got := decodeError(t, w); got.Code != api.CodeUnauthorized || got.Message == "" {
					t.Errorf("got error %+v, want code %s with a message", got, api.CodeUnauthorized)
				}
			})
		}
	}
}

func TestHandler_Success(t *testing.T) {
	t.Run("deploy", func(t *testing.T) {
		var gotProject, gotBody string
		h := New(token, &fakeControl{deploy: func(_ context.Context, project string, archive io.Reader) (api.Deployment, error) {
			b, err := io.ReadAll(archive)
			gotProject, gotBody = project, string(b)
			return api.Deployment{ID: "d1", Project: project, URL: "http://app.localhost:3000/", Entry: "index.js"}, err
		}}, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request("POST", "/projects/app/deployments", "Bearer "+token, strings.NewReader("tar.gz bytes")))
		if w.Code != http.StatusCreated {
			t.Fatalf("got %d %q, want 201", w.Code, w.Body)
		}
		if gotProject != "app" || gotBody != "tar.gz bytes" {
			t.Errorf("control got project %q body %q, want app, tar.gz bytes", gotProject, gotBody)
		}
		var got api.Deployment
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatalf("body %q: %v", w.Body, err)
		}
		if want := (api.Deployment{ID: "d1", Project: "app", URL: "http://app.localhost:3000/", Entry: "index.js"}); !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})
	t.Run("projects_none_is_empty_array", func(t *testing.T) {
		h := New(token, &fakeControl{projects: func(context.Context) ([]api.Project, error) { return nil, nil }}, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request("GET", "/projects", "Bearer "+token, nil))
		if got := strings.TrimSpace(w.Body.String()); w.Code != http.StatusOK || got != "[]" {
			t.Errorf("got %d %q, want 200 []", w.Code, got)
		}
	})
	t.Run("projects", func(t *testing.T) {
		want := []api.Project{{Name: "a", Deployment: "d1", URL: "u", UpdatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}}
		h := New(token, &fakeControl{projects: func(context.Context) ([]api.Project, error) { return want, nil }}, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request("GET", "/projects", "Bearer "+token, nil))
		var got []api.Project
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusOK {
			t.Fatalf("got %d %q (%v), want 200 and a list", w.Code, w.Body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})
	t.Run("isolation", func(t *testing.T) {
		want := api.Isolation{Mode: "auto", Pieces: []api.IsolationPiece{{Name: "cgroup", On: true, Detail: "v2"}, {Name: "landlock", Detail: "not built"}}}
		h := New(token, &fakeControl{isolation: want}, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request("GET", "/isolation", "Bearer "+token, nil))
		var got api.Isolation
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusOK {
			t.Fatalf("got %d %q (%v), want 200 and the report", w.Code, w.Body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})
	t.Run("delete", func(t *testing.T) {
		var got string
		h := New(token, &fakeControl{remove: func(_ context.Context, project string) error { got = project; return nil }}, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request("DELETE", "/projects/app", "Bearer "+token, nil))
		if w.Code != http.StatusNoContent || got != "app" || w.Body.Len() != 0 {
			t.Errorf("got %d %q removing %q, want 204, no body, removing app", w.Code, w.Body, got)
		}
	})
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestHandler_Errors(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		code   string
		msg    string // the exact message, or "" for any
		logged bool   // the error goes to the server log
	}{
		{"build_failed", &BuildError{Msg: "no entry file: add index.js"}, 400, api.CodeBuildFailed, "no entry file: add index.js", false},
		{"build_failed_wrapped", fmt.Errorf("deploy app: %w", &BuildError{Msg: "syntax error in index.js:3"}), 400, api.CodeBuildFailed, "syntax error in index.js:3", false},
		{"not_found", ErrNotFound, 404, api.CodeNotFound, "not found", false},
		{"not_found_wrapped", fmt.Errorf("project %q: %w", "app", ErrNotFound), 404, api.CodeNotFound, `project "app": not found`, false},
		{"bad_request", fmt.Errorf("%w: bad archive", ErrBadRequest), 400, api.CodeBadRequest, "bad request: bad archive", false},
		{"too_large", &http.MaxBytesError{Limit: MaxUpload}, 413, api.CodeTooLarge, fmt.Sprintf("upload over %d bytes", MaxUpload), false},
		{"too_large_wrapped", fmt.Errorf("unpack: %w", &http.MaxBytesError{Limit: MaxUpload}), 413, api.CodeTooLarge, fmt.Sprintf("upload over %d bytes", MaxUpload), false},
		{"other", errors.New("disk on fire at /var/secret/path"), 500, api.CodeInternal, "internal error", true},
		{"canceled", context.Canceled, 500, api.CodeInternal, "internal error", true},
	}
	for _, rt := range routes {
		for _, tt := range tests {
			t.Run(rt.name+"/"+tt.name, func(t *testing.T) {
				var logs syncBuffer
				calls := 0
				h := New(token, allRoutes(tt.err, &calls), slog.New(slog.NewTextHandler(&logs, nil)))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, request(rt.method, rt.path, "Bearer "+token, strings.NewReader(rt.body)))
				if w.Code != tt.status {
					t.Errorf("got status %d, want %d", w.Code, tt.status)
				}
				got := decodeError(t, w)
				if got.Code != tt.code || got.Message != tt.msg {
					t.Errorf("got %s %q, want %s %q", got.Code, got.Message, tt.code, tt.msg)
				}
				if tt.code == api.CodeInternal && strings.Contains(w.Body.String(), tt.err.Error()) {
					t.Errorf("body %q leaks the internal error %q", w.Body, tt.err)
				}
				if gotLogged := strings.Contains(logs.String(), tt.err.Error()); gotLogged != tt.logged {
					t.Errorf("error logged: got %v, want %v; log %q", gotLogged, tt.logged, logs.String())
				}
			})
		}
	}
}

// TestHandler_DeployTooLarge sends a body one byte over MaxUpload: the
// control reading it gets a MaxBytesError, which the API answers with 413.
func TestHandler_DeployTooLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 512 MiB")
	}
	h := New(token, &fakeControl{deploy: func(_ context.Context, _ string, archive io.Reader) (api.Deployment, error) {
		_, err := io.Copy(io.Discard, archive)
		return api.Deployment{}, fmt.Errorf("unpack: %w", err)
	}}, nil)
	body := io.LimitReader(zeros{}, MaxUpload+1)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, request("POST", "/projects/app/deployments", "Bearer "+token, body))
	if got := decodeError(t, w); w.Code != http.StatusRequestEntityTooLarge || got.Code != api.CodeTooLarge {
		t.Errorf("got %d %s %q, want 413 %s", w.Code, got.Code, got.Message, api.CodeTooLarge)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// logCall is one call of Control.Logs.
type logCall struct {
	project string
	after   int64
	limit   int
	wait    bool
}

func line(id int64) api.LogLine {
	return api.LogLine{ID: id, Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Deployment: "d1", Instance: "i1", Stream: "stdout", Message: fmt.Sprintf("line %d", id)}
}

// decodeLines decodes an NDJSON body: one JSON object per line.
func decodeLines(t *testing.T, body string) []api.LogLine {
	t.Helper()
	var out []api.LogLine
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var l api.LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q of %q is not JSON: %v", sc.Text(), body, err)
		}
		out = append(out, l)
	}
	return out
}

func TestHandler_Logs(t *testing.T) {
	// stored are the project's lines; the control pages through them two at
	// a time, as a Control bounded by limit would.
	stored := []api.LogLine{line(3), line(4), line(7), line(9), line(10)}
	tests := []struct {
		name      string
		query     string
		wantIDs   []int64
		wantAfter []int64 // the after of each Control.Logs call
	}{
		{"all", "", []int64{3, 4, 7, 9, 10}, []int64{0, 4, 9, 10}},
		{"after", "?after=4", []int64{7, 9, 10}, []int64{4, 9, 10}},
		{"after_zero", "?after=0", []int64{3, 4, 7, 9, 10}, []int64{0, 4, 9, 10}},
		{"after_negative", "?after=-1", []int64{3, 4, 7, 9, 10}, []int64{-1, 4, 9, 10}},
		{"after_last", "?after=10", nil, []int64{10}},
		{"follow_0_does_not_follow", "?after=9&follow=0", []int64{10}, []int64{9, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []logCall
			h := New(token, &fakeControl{logs: func(_ context.Context, project string, after int64, limit int, wait bool) ([]api.LogLine, error) {
				calls = append(calls, logCall{project, after, limit, wait})
				var out []api.LogLine
				for _, l := range stored {
					if l.ID > after && len(out) < 2 {
						out = append(out, l)
					}
				}
				return out, nil
			}}, nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, request("GET", "/projects/app/logs"+tt.query, "Bearer "+token, nil))
			if w.Code != http.StatusOK {
				t.Fatalf("got %d %q, want 200", w.Code, w.Body)
			}
			if ct := w.Header().Get("content-type"); ct != "application/x-ndjson" {
				t.Errorf("content-type %q, want application/x-ndjson", ct)
			}
			if !strings.HasSuffix(w.Body.String(), "\n") && w.Body.Len() > 0 {
				t.Errorf("body %q does not end with a newline", w.Body)
			}
			got := decodeLines(t, w.Body.String())
			var gotIDs []int64
			for _, l := range got {
				gotIDs = append(gotIDs, l.ID)
				if want := line(l.ID); l != want {
					t.Errorf("got line %+v, want %+v", l, want)
				}
			}
			if !reflect.DeepEqual(gotIDs, tt.wantIDs) {
				t.Errorf("got ids %v, want %v", gotIDs, tt.wantIDs)
			}
			var gotAfter []int64
			for _, c := range calls {
				gotAfter = append(gotAfter, c.after)
				if c.project != "app" || c.wait || c.limit <= 0 {
					t.Errorf("got call %+v, want project app, no wait, a positive limit", c)
				}
			}
			if !reflect.DeepEqual(gotAfter, tt.wantAfter) {
				t.Errorf("got calls after %v, want %v", gotAfter, tt.wantAfter)
			}
		})
	}
}

func TestHandler_LogsBadRequest(t *testing.T) {
	tests := []struct {
		name, query string
	}{
		{"word", "?after=abc"},
		{"float", "?after=1.5"},
		{"overflow", "?after=99999999999999999999"},
		{"space", "?after=%201"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			h := New(token, allRoutes(nil, &calls), nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, request("GET", "/projects/app/logs"+tt.query, "Bearer "+token, nil))
			if w.Code != http.StatusBadRequest {
				t.Fatalf("got %d %q, want 400", w.Code, w.Body)
			}
			if got := decodeError(t, w); got.Code != api.CodeBadRequest || !strings.Contains(got.Message, "after=") {
				t.Errorf("got %s %q, want %s naming after=", got.Code, got.Message, api.CodeBadRequest)
			}
			if calls != 0 {
				t.Errorf("control called %d times, want 0", calls)
			}
		})
	}
}

// TestHandler_LogsFollow runs the API on a loopback server: with follow=1
// each line the control returns reaches the client at once, and the
// handler returns when the client goes away.
func TestHandler_LogsFollow(t *testing.T) {
	for _, follow := range []string{"1", "true"} {
		t.Run("follow="+follow, func(t *testing.T) {
			feed := make(chan []api.LogLine)   // lines a waiting Logs call returns
			calls := make(chan logCall, 100)   // every Logs call
			waitEnded := make(chan error, 100) // what a waiting Logs call saw end it
			ctl := &fakeControl{logs: func(ctx context.Context, project string, after int64, limit int, wait bool) ([]api.LogLine, error) {
				calls <- logCall{project, after, limit, wait}
				if !wait {
					if after == 0 {
						return []api.LogLine{line(1)}, nil
					}
					return nil, nil
				}
				select {
				case ls := <-feed:
					return ls, nil
				case <-ctx.Done():
					waitEnded <- ctx.Err()
					return nil, ctx.Err()
				}
			}}
			served := make(chan struct{}, 1)
			h := New(token, ctl, nil)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer func() { served <- struct{}{} }()
				h.ServeHTTP(w, r)
			}))
			defer srv.Close()

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+api.Prefix+"/projects/app/logs?follow="+follow, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("authorization", "Bearer "+token)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatalf("GET logs: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("got %d, want 200", resp.StatusCode)
			}
			type result struct {
				l   api.LogLine
				err error
			}
			got := make(chan result, 10)
			go func() {
				dec := json.NewDecoder(resp.Body)
				for {
					var l api.LogLine
					err := dec.Decode(&l)
					got <- result{l, err}
					if err != nil {
						return
					}
				}
			}()
			next := func() api.LogLine {
				t.Helper()
				select {
				case r := <-got:
					if r.err != nil {
						t.Fatalf("read line: %v", r.err)
					}
					return r.l
				case <-time.After(10 * time.Second):
					t.Fatal("no line after 10 s: not flushed?")
				}
				return api.LogLine{}
			}

			if l := next(); l.ID != 1 {
				t.Fatalf("got first line %+v, want id 1", l)
			}
			feed <- []api.LogLine{line(2)}
			if l := next(); l.ID != 2 {
				t.Fatalf("got line %+v, want id 2", l)
			}
			feed <- []api.LogLine{line(5), line(6)}
			for _, want := range []int64{5, 6} {
				if l := next(); l.ID != want {
					t.Fatalf("got line %+v, want id %d", l, want)
				}
			}

			// The client goes away: the waiting call sees its ctx end and
			// the handler returns.
			cancel()
			select {
			case err := <-waitEnded:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("waiting Logs ended with %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("waiting Logs call not canceled 10 s after the client went away")
			}
			select {
			case <-served:
			case <-time.After(10 * time.Second):
				t.Fatal("handler still running 10 s after the client went away")
			}
			if r := <-got; r.err == nil {
				t.Errorf("read %+v after cancel, want an error", r.l)
			}

			close(calls)
			var gotCalls []logCall
			for c := range calls {
				gotCalls = append(gotCalls, c)
			}
			wantCalls := []logCall{
				{"app", 0, 1000, false},
				{"app", 1, 1000, true},
				{"app", 2, 1000, true},
				{"app", 6, 1000, true},
			}
			if !reflect.DeepEqual(gotCalls, wantCalls) {
				t.Errorf("got Logs calls %+v, want %+v", gotCalls, wantCalls)
			}
		})
	}
}

// TestHandler_LogsFollowNoLines checks that a follower of a project without
// lines gets the response header at once, before any line.
func TestHandler_LogsFollowNoLines(t *testing.T) {
	release := make(chan struct{})
	h := New(token, &fakeControl{logs: func(ctx context.Context, _ string, _ int64, _ int, wait bool) ([]api.LogLine, error) {
		if !wait {
			return nil, nil
		}
		select {
		case <-release:
			return []api.LogLine{line(1)}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+api.Prefix+"/projects/app/logs?follow=1", nil)
	req.Header.Set("authorization", "Bearer "+token)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET logs: %v (want the header before any line)", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("content-type") != "application/x-ndjson" {
		t.Fatalf("got %d %q, want 200 application/x-ndjson", resp.StatusCode, resp.Header.Get("content-type"))
	}
	close(release)
	var l api.LogLine
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || l.ID != 1 {
		t.Errorf("got %+v, %v; want line 1", l, err)
	}
}

func TestHandler_LogsErrors(t *testing.T) {
	t.Run("first_read_fails", func(t *testing.T) {
		h := New(token, &fakeControl{logs: func(context.Context, string, int64, int, bool) ([]api.LogLine, error) {
			return nil, fmt.Errorf("project %q: %w", "app", ErrNotFound)
		}}, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request("GET", "/projects/app/logs?follow=1", "Bearer "+token, nil))
		if got := decodeError(t, w); w.Code != 404 || got.Code != api.CodeNotFound {
			t.Errorf("got %d %s, want 404 %s", w.Code, got.Code, api.CodeNotFound)
		}
	})
	t.Run("later_read_fails_ends_stream", func(t *testing.T) {
		var logs syncBuffer
		h := New(token, &fakeControl{logs: func(_ context.Context, _ string, after int64, _ int, _ bool) ([]api.LogLine, error) {
			if after == 0 {
				return []api.LogLine{line(1)}, nil
			}
			return nil, errors.New("database is locked")
		}}, slog.New(slog.NewTextHandler(&logs, nil)))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request("GET", "/projects/app/logs?follow=1", "Bearer "+token, nil))
		got := decodeLines(t, w.Body.String())
		if w.Code != 200 || len(got) != 1 || got[0].ID != 1 {
			t.Errorf("got %d %q, want 200 and line 1 alone", w.Code, w.Body)
		}
		if !strings.Contains(logs.String(), "database is locked") {
			t.Errorf("log %q does not say why the stream ended", logs.String())
		}
	})
}

func TestHandler_UsageSince(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name, query  string
		status       int
		since, until time.Time // expected, within a minute
	}{
		{"default_hour", "", 200, now.Add(-time.Hour), now},
		{"duration", "?since=10m", 200, now.Add(-10 * time.Minute), now},
		{"time", "?since=2026-01-02T03:04:05Z", 200, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), now},
		{"until", "?since=2026-01-02T03:04:05Z&until=2026-01-02T03:05:05.5Z", 200,
			time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(2026, 1, 2, 3, 5, 5, 5e8, time.UTC)},
		{"until_duration", "?since=1h&until=30m", 200, now.Add(-time.Hour), now.Add(-30 * time.Minute)},
		{"bad", "?since=yesterday", 400, time.Time{}, time.Time{}},
		{"bad_until", "?until=tomorrow", 400, time.Time{}, time.Time{}},
		{"until_before_since", "?since=10m&until=20m", 400, time.Time{}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got, gotUntil time.Time
			h := New("tok", &fakeControl{usage: func(ctx context.Context, project string, since, until time.Time) (api.Usage, error) {
				got, gotUntil = since, until
				return api.Usage{Project: project, Invocations: 3}, nil
			}}, nil)
			req := httptest.NewRequest("GET", api.Prefix+"/projects/app/usage"+tt.query, nil)
			req.Header.Set("authorization", "Bearer tok")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.status == 200 && (got.Sub(tt.since) > time.Minute || tt.since.Sub(got) > time.Minute) {
				t.Errorf("since = %v, want about %v", got, tt.since)
			}
			if tt.status == 200 && (gotUntil.Sub(tt.until) > time.Minute || tt.until.Sub(gotUntil) > time.Minute) {
				t.Errorf("until = %v, want about %v", gotUntil, tt.until)
			}
		})
	}
}

// envCall is one call of Control.SetEnv or Control.RemoveEnv.
type envCall struct {
	project, name, value string
}

func TestHandler_SetEnv(t *testing.T) {
	tests := []struct {
		name string
		path string
		body string
		want envCall
	}{
		{"value", "/projects/app/env/DB_URL", `{"value":"postgres://u:p@db/x"}`, envCall{"app", "DB_URL", "postgres://u:p@db/x"}},
		{"empty_value", "/projects/app/env/EMPTY", `{"value":""}`, envCall{"app", "EMPTY", ""}},
		{"no_value_is_empty", "/projects/app/env/EMPTY", `{}`, envCall{"app", "EMPTY", ""}},
		{"escapes_and_whitespace", "/projects/app/env/PEM", " {\"value\": \"a\\nb\\u00e9\\\"\"}\n", envCall{"app", "PEM", "a\nbé\""}},
		{"escaped_path", "/projects/my-app/env/A%5FB", `{"value":"v"}`, envCall{"my-app", "A_B", "v"}},
		// The API passes names on as they are: validating them is the
		// control's job.
		{"name_unchecked", "/projects/app/env/1X", `{"value":"v"}`, envCall{"app", "1X", "v"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []envCall
			h := New(token, &fakeControl{setEnv: func(_ context.Context, project, name, value string) error {
				got = append(got, envCall{project, name, value})
				return nil
			}}, nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, request("PUT", tt.path, "Bearer "+token, strings.NewReader(tt.body)))
			if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
				t.Errorf("got %d %q, want 204 and no body", w.Code, w.Body)
			}
			if want := []envCall{tt.want}; !reflect.DeepEqual(got, want) {
				t.Errorf("got calls %+v, want %+v", got, want)
			}
		})
	}
}

func TestHandler_SetEnvBadBody(t *testing.T) {
	tests := []struct {
		name, body string
	}{
		{"empty", ""},
		{"not_json", "postgres://db"},
		{"truncated", `{"value":"x"`},
		{"string_not_object", `"x"`},
		{"number_value", `{"value":1}`},
		{"array", `[]`},
		{"unknown_field", `{"value":"x","secret":true}`},
		{"misspelt_field", `{"valeu":"x"}`},
		{"two_values", `{"value":"x"}{"value":"y"}`},
		{"trailing_garbage", `{"value":"x"} x`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			h := New(token, allRoutes(nil, &calls), nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, request("PUT", "/projects/app/env/A", "Bearer "+token, strings.NewReader(tt.body)))
			if w.Code != http.StatusBadRequest {
				t.Fatalf("got %d %q, want 400", w.Code, w.Body)
			}
			if got := decodeError(t, w); got.Code != api.CodeBadRequest || !strings.Contains(got.Message, "request body") {
				t.Errorf("got %s %q, want %s about the request body", got.Code, got.Message, api.CodeBadRequest)
			}
			if calls != 0 {
				t.Errorf("control called %d times, want 0", calls)
			}
		})
	}
}

func TestHandler_SetEnvTooLarge(t *testing.T) {
	tests := []struct {
		name   string
		size   int // of the value
		status int
	}{
		{"fits", maxEnvBody - len(`{"value":""}`), http.StatusNoContent},
		{"one_byte_over", maxEnvBody - len(`{"value":""}`) + 1, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			h := New(token, allRoutes(nil, &calls), nil)
			body := `{"value":"` + strings.Repeat("x", tt.size) + `"}`
			w := httptest.NewRecorder()
			h.ServeHTTP(w, request("PUT", "/projects/app/env/A", "Bearer "+token, strings.NewReader(body)))
			if w.Code != tt.status {
				t.Fatalf("got %d %q, want %d", w.Code, w.Body, tt.status)
			}
			if tt.status != http.StatusNoContent {
				if got := decodeError(t, w); got.Code != api.CodeTooLarge {
					t.Errorf("got %s %q, want %s", got.Code, got.Message, api.CodeTooLarge)
				}
				if calls != 0 {
					t.Errorf("control called %d times, want 0", calls)
				}
			}
		})
	}
}

func TestHandler_Env(t *testing.T) {
	updated := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name     string
		vars     []api.EnvVar
		wantBody string
	}{
		{"none_is_empty_array", nil, `[]`},
		{"empty_is_empty_array", []api.EnvVar{}, `[]`},
		{"names_and_times_only", []api.EnvVar{{Name: "A", UpdatedAt: updated}, {Name: "B", UpdatedAt: updated}},
			`[{"name":"A","updatedAt":"2025-01-02T03:04:05.000000006Z"},{"name":"B","updatedAt":"2025-01-02T03:04:05.000000006Z"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			h := New(token, &fakeControl{env: func(_ context.Context, project string) ([]api.EnvVar, error) {
				got = project
				return tt.vars, nil
			}}, nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, request("GET", "/projects/app/env", "Bearer "+token, nil))
			if w.Code != http.StatusOK || got != "app" {
				t.Fatalf("got %d %q listing %q, want 200 listing app", w.Code, w.Body, got)
			}
			if ct := w.Header().Get("content-type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content-type %q, want application/json", ct)
			}
			if got, want := strings.TrimSpace(w.Body.String()), tt.wantBody; got != want {
				t.Errorf("body: got %s, want %s", got, want)
			}
		})
	}
}

func TestHandler_RemoveEnv(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"removed", nil, http.StatusNoContent, ""},
		{"missing", fmt.Errorf("environment variable A of project %q: %w", "app", ErrNotFound), http.StatusNotFound, api.CodeNotFound},
		{"bad_name", fmt.Errorf("%w: env name %q: use letters", ErrBadRequest, "1X"), http.StatusBadRequest, api.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []envCall
			h := New(token, &fakeControl{removeEnv: func(_ context.Context, project, name string) error {
				got = append(got, envCall{project: project, name: name})
				return tt.err
			}}, nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, request("DELETE", "/projects/app/env/A", "Bearer "+token, nil))
			if w.Code != tt.status {
				t.Fatalf("got %d %q, want %d", w.Code, w.Body, tt.status)
			}
			if tt.code != "" {
				if e := decodeError(t, w); e.Code != tt.code || e.Message != tt.err.Error() {
					t.Errorf("got %s %q, want %s %q", e.Code, e.Message, tt.code, tt.err)
				}
			} else if w.Body.Len() != 0 {
				t.Errorf("body %q, want none", w.Body)
			}
			if want := []envCall{{project: "app", name: "A"}}; !reflect.DeepEqual(got, want) {
				t.Errorf("got calls %+v, want %+v", got, want)
			}
		})
	}
}

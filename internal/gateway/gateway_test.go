package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/invoker"
)

func TestRoute(t *testing.T) {
	tests := []struct {
		name, host, path, project, rest string
		ok                              bool
	}{
		{"path", "127.0.0.1:3000", "/hello/a/b", "hello", "/a/b", true},
		{"path_root", "127.0.0.1:3000", "/hello/", "hello", "/", true},
		{"path_no_slash", "127.0.0.1:3000", "/hello", "hello", "/", true},
		{"host", "hello.localhost:3000", "/a/b", "hello", "/a/b", true},
		{"host_upper", "Hello.LOCALHOST", "/", "hello", "/", true},
		{"host_nested_is_path", "a.b.localhost:3000", "/x/y", "x", "/y", true},
		{"root", "127.0.0.1:3000", "/", "", "", false},
		{"api", "127.0.0.1:3000", "/_shoal/api/v1/projects", "", "", false},
		{"bare_localhost", "localhost:3000", "/p/q", "p", "/q", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			project, rest, ok := route(tt.host, tt.path)
			if project != tt.project || rest != tt.rest || ok != tt.ok {
				t.Errorf("route(%q, %q) = %q, %q, %v; want %q, %q, %v", tt.host, tt.path, project, rest, ok, tt.project, tt.rest, tt.ok)
			}
		})
	}
}

// invokerFunc is an Invoker made of a function.
type invokerFunc func(project string, r *http.Request) (*http.Response, error)

func (f invokerFunc) Invoke(project string, r *http.Request) (*http.Response, error) {
	return f(project, r)
}

func TestGateway_Errors(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		header string // x-shoal-error from the function instead of err
		status int
		code   string
	}{
		{"not_found", invoker.ErrNotFound, "", 404, CodeDeploymentNotFound},
		{"throttled", invoker.ErrThrottled, "", 503, CodeThrottled},
		{"start_failed", invoker.ErrStartFailed, "", 500, CodeInvocationFailed},
		{"instance_died", errors.New("stream reset"), "", 500, CodeInvocationFailed},
		{"fn_timeout", nil, CodeTimeout, 504, CodeTimeout},
		{"fn_no_response", nil, CodeNoResponse, 502, CodeNoResponse},
		{"fn_unknown_code", nil, "SOMETHING_NEW", 500, CodeInvocationFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(Config{}, invokerFunc(func(project string, r *http.Request) (*http.Response, error) {
				if tt.err != nil {
					return nil, tt.err
				}
				h := http.Header{}
				h.Set(ErrorHeader, tt.header)
				return &http.Response{StatusCode: 500, Header: h, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
			}), nil, nil)
			req := httptest.NewRequest("GET", "http://127.0.0.1/app/x", nil)
			req.Header.Set("accept", "application/json")
			w := httptest.NewRecorder()
			g.ServeHTTP(w, req)
			var body struct {
				Error struct{ Code, Message, ID string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if w.Code != tt.status || body.Error.Code != tt.code {
				t.Errorf("got %d %s, want %d %s", w.Code, body.Error.Code, tt.status, tt.code)
			}
			if id := w.Header().Get(IDHeader); id == "" || id != body.Error.ID {
				t.Errorf("x-shoal-id %q, body id %q: want the same, non-empty", id, body.Error.ID)
			}
			if tt.status == 503 && w.Header().Get("retry-after") == "" {
				t.Error("503 without retry-after")
			}
		})
	}
}

func TestGateway_TextErrors(t *testing.T) {
	g := New(Config{}, nil, nil, nil)
	w := httptest.NewRecorder()
	g.ServeHTTP(w, httptest.NewRequest("GET", "http://127.0.0.1/", nil))
	if w.Code != 404 || !strings.Contains(w.Body.String(), "Code: "+CodeNotFound) || !strings.HasPrefix(w.Header().Get("content-type"), "text/plain") {
		t.Errorf("got %d %q %q, want a 404 text error", w.Code, w.Header().Get("content-type"), w.Body)
	}
}

func TestGateway_PassesRequest(t *testing.T) {
	var got *http.Request
	g := New(Config{}, invokerFunc(func(project string, r *http.Request) (*http.Response, error) {
		if project != "app" {
			t.Errorf("project = %q, want app", project)
		}
		got = r
		return &http.Response{StatusCode: 201, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("made")), Request: r}, nil
	}), nil, nil)
	req := httptest.NewRequest("POST", "http://127.0.0.1:3000/app/items?x=1", strings.NewReader("body"))
	req.Header.Set("x-shoal-id", "spoofed")
	req.Header.Set("x-shoal-error", "spoofed")
	w := httptest.NewRecorder()
	g.ServeHTTP(w, req)
	if w.Code != 201 || w.Body.String() != "made" {
		t.Fatalf("got %d %q, want 201 made", w.Code, w.Body)
	}
	if got.URL.Path != "/items" || got.URL.RawQuery != "x=1" {
		t.Errorf("function saw %s?%s, want /items?x=1", got.URL.Path, got.URL.RawQuery)
	}
	if id := got.Header.Get(IDHeader); id == "spoofed" || id != w.Header().Get(IDHeader) {
		t.Errorf("function saw id %q, client %q: want the gateway's, the same", id, w.Header().Get(IDHeader))
	}
	if got.Header.Get(ErrorHeader) != "" {
		t.Error("client's x-shoal-error reached the function")
	}
}

func TestGateway_BodyLimit(t *testing.T) {
	called := false
	g := New(Config{MaxBodyBytes: 10}, invokerFunc(func(project string, r *http.Request) (*http.Response, error) {
		called = true
		_, err := io.ReadAll(r.Body)
		return nil, err
	}), nil, nil)
	for _, tt := range []struct {
		name    string
		length  int64
		invoked bool // whether the invocation starts before the limit is seen
	}{{"declared", 11, false}, {"chunked", -1, true}} {
		t.Run(tt.name, func(t *testing.T) {
			called = false
			req := httptest.NewRequest("POST", "http://127.0.0.1/app/", strings.NewReader(strings.Repeat("x", 11)))
			req.ContentLength = tt.length
			w := httptest.NewRecorder()
			g.ServeHTTP(w, req)
			if w.Code != 413 || !strings.Contains(w.Body.String(), CodePayloadTooLarge) {
				t.Errorf("got %d %q, want 413 %s", w.Code, w.Body, CodePayloadTooLarge)
			}
			if got := w.Header().Get("connection"); got != "close" {
				t.Errorf("connection = %q, want close: the unread body must not be taken for the next request", got)
			}
			if called != tt.invoked {
				t.Errorf("invoker called = %v, want %v", called, tt.invoked)
			}
		})
	}
}

// Package apiclient is the typed client of the control API; the CLI talks
// to the server only through it.
package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/shoal-dev/shoal/internal/api"
)

// Client calls one shoal server.
type Client struct {
	// immutable
	base  string
	token string
	http  *http.Client
}

// New returns a client of the server at baseURL (http://host:port).
func New(baseURL, token string) *Client {
	return &Client{base: strings.TrimSuffix(baseURL, "/"), token: token, http: &http.Client{}}
}

// Error is an error response of the API.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+api.Prefix+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("content-type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("reach shoal at %s: %w", c.base, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e api.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
			return nil, &Error{Status: resp.StatusCode, Code: "HTTP_" + fmt.Sprint(resp.StatusCode), Message: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
		}
		return nil, &Error{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	return resp, nil
}

func (c *Client) decode(ctx context.Context, method, path string, body io.Reader, contentType string, v any) error {
	resp, err := c.do(ctx, method, path, body, contentType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if v == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}

// Deploy uploads archive (a tar.gz of the project folder) as project.
func (c *Client) Deploy(ctx context.Context, project string, archive io.Reader) (api.Deployment, error) {
	var d api.Deployment
	err := c.decode(ctx, "POST", "/projects/"+url.PathEscape(project)+"/deployments", archive, "application/gzip", &d)
	return d, err
}

// Projects lists the projects.
func (c *Client) Projects(ctx context.Context) ([]api.Project, error) {
	var ps []api.Project
	err := c.decode(ctx, "GET", "/projects", nil, "", &ps)
	return ps, err
}

// Remove deletes a project with its deployments and logs.
func (c *Client) Remove(ctx context.Context, project string) error {
	return c.decode(ctx, "DELETE", "/projects/"+url.PathEscape(project), nil, "", nil)
}

// SetEnv sets the environment variable name of project to value. It applies
// from the project's next deploy.
func (c *Client) SetEnv(ctx context.Context, project, name, value string) error {
	body, err := json.Marshal(api.SetEnv{Value: value})
	if err != nil {
		return fmt.Errorf("encode value of %s: %w", name, err)
	}
	return c.decode(ctx, "PUT", envPath(project, name), bytes.NewReader(body), "application/json", nil)
}

// Env lists the environment variables of project by name; the API never
// returns their values.
func (c *Client) Env(ctx context.Context, project string) ([]api.EnvVar, error) {
	var vs []api.EnvVar
	err := c.decode(ctx, "GET", "/projects/"+url.PathEscape(project)+"/env", nil, "", &vs)
	return vs, err
}

// RemoveEnv deletes the environment variable name of project. It applies
// from the project's next deploy.
func (c *Client) RemoveEnv(ctx context.Context, project, name string) error {
	return c.decode(ctx, "DELETE", envPath(project, name), nil, "", nil)
}

// envPath is the path of one environment variable of project.
func envPath(project, name string) string {
	return "/projects/" + url.PathEscape(project) + "/env/" + url.PathEscape(name)
}

// Isolation returns what isolates the server's instances.
func (c *Client) Isolation(ctx context.Context) (api.Isolation, error) {
	var iso api.Isolation
	err := c.decode(ctx, "GET", "/isolation", nil, "", &iso)
	return iso, err
}

// Usage returns what the project cost from since until until, each a
// duration back from now or an RFC 3339 time; until "" means now.
func (c *Client) Usage(ctx context.Context, project, since, until string) (api.Usage, error) {
	var u api.Usage
	q := url.Values{"since": {since}}
	if until != "" {
		q.Set("until", until)
	}
	err := c.decode(ctx, "GET", "/projects/"+url.PathEscape(project)+"/usage?"+q.Encode(), nil, "", &u)
	return u, err
}

// Logs calls fn for each of the project's log lines after id; with follow
// it keeps waiting for new ones until ctx is done.
func (c *Client) Logs(ctx context.Context, project string, after int64, follow bool, fn func(api.LogLine) error) error {
	path := fmt.Sprintf("/projects/%s/logs?after=%d", url.PathEscape(project), after)
	if follow {
		path += "&follow=1"
	}
	resp, err := c.do(ctx, "GET", path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l api.LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("decode log line: %w", err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("read logs: %w", err)
	}
	return nil
}

package adminapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// Errors a Control returns for the API to map.
var (
	// ErrNotFound: no such project, or no such environment variable.
	ErrNotFound = errors.New("not found")
	// ErrBadRequest: the request or the uploaded project is unusable; the
	// message is for the user.
	ErrBadRequest = errors.New("bad request")
)

// BuildError is a deploy refused because of the project's content.
type BuildError struct{ Msg string }

func (e *BuildError) Error() string { return e.Msg }

// Control does what the API asks.
type Control interface {
	// Deploy builds the project folder packed in archive (tar.gz) and makes
	// it the project's current deployment.
	Deploy(ctx context.Context, project string, archive io.Reader) (api.Deployment, error)
	Projects(ctx context.Context) ([]api.Project, error)
	Remove(ctx context.Context, project string) error
	// Logs returns the project's lines after id, at most limit; with wait it
	// blocks until there is at least one or ctx is done.
	Logs(ctx context.Context, project string, after int64, limit int, wait bool) ([]api.LogLine, error)
	// Usage returns what the project cost over [since, until).
	Usage(ctx context.Context, project string, since, until time.Time) (api.Usage, error)
	// SetEnv sets one environment variable of the project, which need not
	// be deployed yet; it applies from the project's next deployment.
	SetEnv(ctx context.Context, project, name, value string) error
	// Env lists the project's environment variables by name, without
	// their values; none is not an error.
	Env(ctx context.Context, project string) ([]api.EnvVar, error)
	// RemoveEnv deletes one environment variable of the project, or
	// returns ErrNotFound; the removal applies from its next deployment.
	RemoveEnv(ctx context.Context, project, name string) error
	// Isolation is what isolates the server's instances.
	Isolation() api.Isolation
}

// MaxUpload bounds an uploaded project archive.
const MaxUpload = 512 << 20

// maxEnvBody bounds the body of an environment variable set: room for a
// value as large as a whole project's variables may be (64 KiB), even with
// every byte JSON-escaped.
const maxEnvBody = 1 << 20

// Handler is the control API.
type Handler struct {
	// immutable
	token []byte
	ctl   Control
	log   *slog.Logger
	mux   *http.ServeMux
}

// New returns the API, answering only requests that carry token.
func New(token string, ctl Control, log *slog.Logger) *Handler {
	if token == "" || ctl == nil {
		panic("adminapi.New: token and control are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{token: []byte(token), ctl: ctl, log: log, mux: http.NewServeMux()}
	h.handle("POST /projects/{name}/deployments", h.deploy)
	h.handle("GET /projects", h.projects)
	h.handle("DELETE /projects/{name}", h.remove)
	h.handle("GET /projects/{name}/logs", h.logs)
	h.handle("GET /projects/{name}/usage", h.usage)
	h.handle("PUT /projects/{name}/env/{key}", h.setEnv)
	h.handle("GET /projects/{name}/env", h.env)
	h.handle("DELETE /projects/{name}/env/{key}", h.removeEnv)
	h.handle("GET /isolation", h.isolation)
	return h
}

func (h *Handler) handle(pattern string, f func(w http.ResponseWriter, r *http.Request) error) {
	method, path, _ := strings.Cut(pattern, " ")
	h.mux.HandleFunc(method+" "+api.Prefix+path, func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			h.render(w, r, err)
		}
	})
}

// ServeHTTP checks the token and serves the API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("authorization")
	scheme, got, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(got), h.token) != 1 {
		h.render(w, r, &statusError{http.StatusUnauthorized, api.CodeUnauthorized, "missing or wrong token: run shoal on the machine that serves, or pass --token / $SHOAL_TOKEN"})
		return
	}
	h.mux.ServeHTTP(w, r)
}

type statusError struct {
	status int
	code   string
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// render is the one function that writes an error response.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, err error) {
	se := &statusError{http.StatusInternalServerError, api.CodeInternal, "internal error"}
	var be *BuildError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &se):
	case errors.As(err, &be):
		se = &statusError{http.StatusBadRequest, api.CodeBuildFailed, be.Msg}
	case errors.As(err, &mbe):
		se = &statusError{http.StatusRequestEntityTooLarge, api.CodeTooLarge, fmt.Sprintf("upload over %d bytes", mbe.Limit)}
	case errors.Is(err, ErrNotFound):
		se = &statusError{http.StatusNotFound, api.CodeNotFound, err.Error()}
	case errors.Is(err, ErrBadRequest):
		se = &statusError{http.StatusBadRequest, api.CodeBadRequest, err.Error()}
	default:
		h.log.Error("control api", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	w.Header().Set("content-type", "application/json; charset=utf-8")
	w.WriteHeader(se.status)
	json.NewEncoder(w).Encode(api.Error{Error: api.ErrorBody{Code: se.code, Message: se.msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("content-type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func (h *Handler) deploy(w http.ResponseWriter, r *http.Request) error {
	body := http.MaxBytesReader(w, r.Body, MaxUpload)
	d, err := h.ctl.Deploy(r.Context(), r.PathValue("name"), body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, d)
	return nil
}

func (h *Handler) projects(w http.ResponseWriter, r *http.Request) error {
	ps, err := h.ctl.Projects(r.Context())
	if err != nil {
		return err
	}
	if ps == nil {
		ps = []api.Project{}
	}
	writeJSON(w, http.StatusOK, ps)
	return nil
}

func (h *Handler) remove(w http.ResponseWriter, r *http.Request) error {
	if err := h.ctl.Remove(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// setEnv sets one environment variable from a body {"value": "..."}.
func (h *Handler) setEnv(w http.ResponseWriter, r *http.Request) error {
	var body api.SetEnv
	if err := decodeJSON(w, r, maxEnvBody, &body); err != nil {
		return err
	}
	if err := h.ctl.SetEnv(r.Context(), r.PathValue("name"), r.PathValue("key"), body.Value); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// env lists the project's environment variables, names and times only.
func (h *Handler) env(w http.ResponseWriter, r *http.Request) error {
	vs, err := h.ctl.Env(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	if vs == nil {
		vs = []api.EnvVar{}
	}
	writeJSON(w, http.StatusOK, vs)
	return nil
}

// removeEnv deletes one environment variable.
func (h *Handler) removeEnv(w http.ResponseWriter, r *http.Request) error {
	if err := h.ctl.RemoveEnv(r.Context(), r.PathValue("name"), r.PathValue("key")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// decodeJSON decodes the request body, of at most limit bytes, into v: one
// JSON value with no field v lacks. A body that is not one is ErrBadRequest;
// one over limit is a *http.MaxBytesError.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err = dec.Token(); err == io.EOF {
			return nil
		} else if err == nil {
			err = errors.New("more than one JSON value")
		}
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return err
	}
	if err == io.EOF {
		err = errors.New("empty")
	}
	return fmt.Errorf("%w: request body: %v", ErrBadRequest, err)
}

// usage answers what the project cost from ?since= (default 1h ago) until
// ?until= (default now), each an RFC 3339 time or a duration back from now.
func (h *Handler) usage(w http.ResponseWriter, r *http.Request) error {
	now := time.Now()
	since, err := timeParam(r, "since", now, now.Add(-time.Hour))
	if err != nil {
		return err
	}
	until, err := timeParam(r, "until", now, now)
	if err != nil {
		return err
	}
	if !since.Before(until) {
		return fmt.Errorf("%w: since must be before until", ErrBadRequest)
	}
	u, err := h.ctl.Usage(r.Context(), r.PathValue("name"), since, until)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (h *Handler) isolation(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, h.ctl.Isolation())
	return nil
}

// timeParam reads query parameter name as an RFC 3339 time or a duration
// back from now; def if it is absent.
func timeParam(r *http.Request, name string, now, def time.Time) (time.Time, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w: %s=%q is neither a time (RFC 3339) nor a duration", ErrBadRequest, name, s)
}

// logs streams the project's lines as NDJSON; with follow=1 it keeps the
// response open and writes new lines as they come.
func (h *Handler) logs(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	q := r.URL.Query()
	var after int64
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: after=%q is not a number", ErrBadRequest, s)
		}
		after = n
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	ctx := r.Context()
	lines, err := h.ctl.Logs(ctx, name, after, 1000, false)
	if err != nil {
		return err
	}
	w.Header().Set("content-type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	for {
		for _, l := range lines {
			if err := enc.Encode(l); err != nil {
				return nil
			}
			after = l.ID
		}
		if len(lines) == 0 && !follow {
			return nil
		}
		rc.Flush()
		lines, err = h.ctl.Logs(ctx, name, after, 1000, follow)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("logs follow", "project", name, "err", err)
			}
			return nil
		}
	}
}

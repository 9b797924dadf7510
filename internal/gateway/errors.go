package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Platform error codes, as DESIGN.md lists them.
const (
	CodeNotFound           = "NOT_FOUND"
	CodeDeploymentNotFound = "DEPLOYMENT_NOT_FOUND"
	CodePayloadTooLarge    = "FUNCTION_PAYLOAD_TOO_LARGE"
	CodeHeaderTooLarge     = "REQUEST_HEADER_TOO_LARGE"
	CodeURLTooLong         = "URL_TOO_LONG"
	CodeResponseTooLarge   = "FUNCTION_RESPONSE_PAYLOAD_TOO_LARGE"
	CodeInvocationFailed   = "FUNCTION_INVOCATION_FAILED"
	CodeInvalidJSON        = "INVALID_JSON_BODY"
	CodeNoResponse         = "NO_RESPONSE_FROM_FUNCTION"
	CodeThrottled          = "FUNCTION_THROTTLED"
	CodeTimeout            = "FUNCTION_INVOCATION_TIMEOUT"
	CodeOutOfMemory        = "FUNCTION_OUT_OF_MEMORY"
)

// HTTPError is a platform error: what the client sees (Status, Code, Msg)
// and the private cause (Err), which only the logs see.
type HTTPError struct {
	Status int
	Code   string
	Msg    string
	Err    error
	// RetryAfter, when non-zero, is sent as retry-after (seconds).
	RetryAfter int
}

func (e *HTTPError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Msg, e.Err)
	}
	return e.Code + ": " + e.Msg
}

func (e *HTTPError) Unwrap() error { return e.Err }

// codeStatus is the status of each code the runtime or bootstrap may send
// in x-shoal-error.
var codeStatus = map[string]int{
	CodeInvocationFailed: http.StatusInternalServerError,
	CodeInvalidJSON:      http.StatusBadRequest,
	CodeNoResponse:       http.StatusBadGateway,
	CodeTimeout:          http.StatusGatewayTimeout,
	CodeOutOfMemory:      http.StatusInternalServerError,
}

var codeMsg = map[string]string{
	CodeInvocationFailed: "the function failed; see its logs",
	CodeInvalidJSON:      "the request body is not valid JSON",
	CodeNoResponse:       "the function ended without a response",
	CodeTimeout:          "the function did not finish within maxDuration",
	CodeOutOfMemory:      "the function ran out of memory; see its logs, or raise its memory",
}

// fromFunction is the platform error that the instance marked a response as.
func fromFunction(code string) *HTTPError {
	status, ok := codeStatus[code]
	if !ok {
		code, status = CodeInvocationFailed, http.StatusInternalServerError
	}
	return &HTTPError{Status: status, Code: code, Msg: codeMsg[code]}
}

// render writes err as a platform error response in the format the request
// asked for: JSON when Accept names it, text otherwise. It is the only
// function in the gateway that writes an error response.
func render(w http.ResponseWriter, r *http.Request, id string, err error) {
	var he *HTTPError
	if !errors.As(err, &he) {
		he = &HTTPError{Status: http.StatusInternalServerError, Code: CodeInvocationFailed, Msg: "internal error", Err: err}
	}
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set(IDHeader, id)
	h.Set("cache-control", "no-store")
	if he.Status == http.StatusRequestEntityTooLarge {
		// The rest of the body is still on its way: do not let the client
		// send its next request on this connection.
		h.Set("connection", "close")
	}
	if he.RetryAfter > 0 {
		h.Set("retry-after", fmt.Sprint(he.RetryAfter))
	}
	if strings.Contains(r.Header.Get("accept"), "application/json") {
		h.Set("content-type", "application/json; charset=utf-8")
		w.WriteHeader(he.Status)
		json.NewEncoder(w).Encode(map[string]any{
			"error": map[string]string{"code": he.Code, "message": he.Msg, "id": id},
		})
		return
	}
	h.Set("content-type", "text/plain; charset=utf-8")
	w.WriteHeader(he.Status)
	fmt.Fprintf(w, "%d: %s\nCode: %s\nID: %s\n", he.Status, he.Msg, he.Code, id)
}

// Package gateway is where client HTTP enters shoal. It maps a request to
// its project (Host NAME.localhost, or the first path segment), gives it a
// request id, enforces the request limits, hands it to the invoker, and is
// the one place that turns a failure into a platform error response.
package gateway

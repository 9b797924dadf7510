// Package e2e tests shoal end to end: the real binary, real node processes,
// real sockets. Each test starts its own serve.
package e2e

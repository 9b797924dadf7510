// Package adminapi is the JSON control API under /_shoal/api/v1: deploy,
// list, remove and logs. Every request needs the bearer token. It is HTTP
// only: the work is done by the Control that the server wires in.
package adminapi

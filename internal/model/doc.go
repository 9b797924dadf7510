// Package model holds the value types that every part of shoal shares:
// project names, deployment ids and a function's configuration, each with
// its validation. It does no I/O.
package model

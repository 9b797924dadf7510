// Package cli is the shoal command line: one cobra command per file. Client
// commands talk to the server only through apiclient; serve and runtime
// hand their work to the server and runtime packages.
package cli

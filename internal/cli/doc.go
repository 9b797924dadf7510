// Package cli is the shoal command line: one cobra command per file. Client
// commands talk to the server only through apiclient; serve hands its work
// to the server package, and the runtime command is runtimecmd's.
package cli

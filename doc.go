// Package shoal is the root of the shoal module; it holds only the tests
// that check the whole tree (the import graph, package docs). The platform
// is under internal/ and the command under cmd/shoal.
package shoal

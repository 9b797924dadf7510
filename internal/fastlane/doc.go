// Package fastlane serves the gateway's client connections. The common
// request, a bodiless HTTP/1.1 request to a function, it reads, hands to the
// handler and answers in a loop of its own that does less per request than
// net/http's:
//
//   - No goroutine per request to notice the client leaving: a watch peeks
//     at the connections whose request is older than WatchEvery instead.
//   - Little allocated per request (parsePlain: the head's string): the
//     request, its URL and header, and room for the header of the response
//     the handler reads for it (httphead.WithHeader; nodelink reads node's
//     there) are the connection's, kept from one request to the next, so a
//     handler must not keep them, nor the response, once it returned. Nor
//     is the response's header copied when it is sent, as net/http's is.
//   - One context for all of a connection's requests, which ends when the
//     client leaves or the connection closes; not, as net/http's, when the
//     handler returns.
//   - For most requests no deadline change, where net/http makes about
//     eight: the idle deadline moves on only once it would move by more
//     than a 64th of the timeout, and a response's write deadline reaches
//     the socket only while a write waits (rawsock.WaitDeadliner).
//
// Every other connection is handed whole to a net/http Server, from the
// first request the lane does not serve: HTTP/2, request bodies, upgrades,
// Expect, heads over the lane's buffer, malformed input and whatever else
// net/http knows how to answer. The lane parses the common head itself
// (parsePlain, fuzzed against net/http's ReadRequest: what it parses,
// ReadRequest parses the same), any other with ReadRequest, and checks
// what net/http's server checks; it only looks at the bytes to find where a
// request's head ends, so net/http reads a handed-off request exactly as
// the client sent it.
package fastlane

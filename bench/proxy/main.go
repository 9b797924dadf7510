// Command proxy is bench/hello.sh's measure of one proxy hop: the standard
// library's reverse proxy (net/http/httputil) in front of the bare node
// server. It is the least a request through a Go gateway in front of node
// costs, to set shoal's Go CPU per invocation against.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:3903", "address to serve on")
	to := flag.String("to", "http://127.0.0.1:3901", "the server to send requests to")
	flag.Parse()
	target, err := url.Parse(*to)
	if err != nil {
		log.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	// Keep a connection to node per client connection, as shoal's pool
	// does; the default (2 idle per host) would dial anew under load.
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 1024}
	log.Fatal(http.ListenAndServe(*listen, rp))
}

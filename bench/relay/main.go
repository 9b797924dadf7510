// Command relay is bench/hello.sh's floor for a hop in front of node: it
// forwards bytes, with no HTTP, between each client connection and a
// connection of its own to node's unix socket, reading and writing with
// the raw system calls serve uses (internal/rawsock). Whatever stands
// between a client and node does at least this per request: two reads, two
// writes, and a wait for each side; so the relay's CPU per request is what
// a hop costs before it parses, routes or meters anything. With -heads it
// reads and rewrites HTTP heads instead (see heads.go), and with -lanes
// too it reaches node over lanes, as serve does.
package main

import (
	"flag"
	"log"
	"net"

	"github.com/shoal-dev/shoal/internal/rawsock"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:3904", "address to serve on")
	to := flag.String("to", "", "the unix socket of the server to relay to")
	heads := flag.Bool("heads", false, "read and rewrite HTTP heads, as bench/hello.sh's rawhop")
	lanes := flag.Bool("lanes", false, "with -heads, reach node over lanes, as serve does (bench/hello.sh's rawlane)")
	flag.Parse()
	if *to == "" {
		log.Fatal("relay: -to is required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	carry := relay
	switch {
	case *heads && *lanes:
		carry = rewriter(dialLane)
	case *heads:
		carry = rewriter(dialSocket)
	case *lanes:
		log.Fatal("relay: -lanes goes with -heads")
	}
	log.Fatal(serve(ln, *to, carry))
}

// serve has carry take each connection ln accepts to the unix socket at
// path, until ln fails.
func serve(ln net.Listener, path string, carry func(client net.Conn, path string)) error {
	for {
		client, err := ln.Accept()
		if err != nil {
			return err
		}
		go carry(client, path)
	}
}

// relay forwards between client and a new connection to the server at
// path, each way on a goroutine of its own, until either side ends; then
// it closes both, which ends the other way's read.
func relay(client net.Conn, path string) {
	server, err := net.Dial("unix", path)
	if err != nil {
		log.Print(err)
		client.Close()
		return
	}
	end := func() {
		client.Close()
		server.Close()
	}
	go func() {
		forward(server, client)
		end()
	}()
	forward(client, server)
	end()
}

// forward writes to dst what it reads from src, until either fails.
func forward(dst, src net.Conn) {
	r, w := rawsock.Reader(src), rawsock.Writer(dst)
	buf := make([]byte, 16<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

package tunnel

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/http2"
)

// Dial connects an instance to the invoker's listener at addr and performs
// the handshake as instance id with its one-time token.
func Dial(ctx context.Context, addr, id, token string) (net.Conn, error) {
	hello, err := formatHello(id, token)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial tunnel %s: %w", addr, err)
	}
	c.SetDeadline(time.Now().Add(HandshakeTimeout))
	if _, err := c.Write(hello); err != nil {
		c.Close()
		return nil, fmt.Errorf("tunnel handshake %s: %w", addr, err)
	}
	// Read the answer byte by byte: what follows belongs to HTTP/2.
	br := bufio.NewReaderSize(&oneByteReader{c}, 16)
	line, err := br.ReadString('\n')
	if err != nil || line != okLine {
		c.Close()
		return nil, fmt.Errorf("tunnel handshake %s: refused", addr)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

type oneByteReader struct{ c net.Conn }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return r.c.Read(p)
}

// Serve answers invocations arriving on the dialed connection c with h
// until the connection closes or ctx is done. Each request's context is
// cancelled when the invoker resets its stream.
func Serve(ctx context.Context, c net.Conn, h http.Handler) {
	srv := &http2.Server{
		MaxConcurrentStreams: 10000,
		// Idle instances are the invoker's to stop, not the link's.
		IdleTimeout: 0,
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	srv.ServeConn(c, &http2.ServeConnOpts{Context: ctx, Handler: h})
}

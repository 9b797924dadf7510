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

// DrainTimeout bounds how long Serve lets the invocations in flight finish
// after its context is done.
const DrainTimeout = 10 * time.Second

// Serve answers the invoker's requests (reports, loops) arriving on the
// connection c with h until the connection closes or ctx is done. Each
// request's context is cancelled when the invoker resets its stream. When
// ctx is done, Serve sends GOAWAY, so the invoker starts nothing new here,
// lets the streams in flight finish for up to DrainTimeout, and closes the
// connection.
func Serve(ctx context.Context, c net.Conn, h http.Handler) {
	hs := &http.Server{Handler: h}
	srv := &http2.Server{
		MaxConcurrentStreams: 10000,
		// Idle instances are the invoker's to stop, not the link's.
		IdleTimeout: 0,
	}
	if err := http2.ConfigureServer(hs, srv); err != nil {
		panic("tunnel: configure http2 server: " + err.Error())
	}
	served := make(chan struct{})
	go func() {
		select {
		case <-served:
			return
		case <-ctx.Done():
		}
		// Shutdown has no listener to wait for; it only starts the
		// graceful GOAWAY on every connection served with hs.
		hs.Shutdown(context.Background())
		t := time.NewTimer(DrainTimeout)
		defer t.Stop()
		select {
		case <-served:
		case <-t.C:
			c.Close()
		}
	}()
	srv.ServeConn(c, &http2.ServeConnOpts{Context: context.WithoutCancel(ctx), BaseConfig: hs, Handler: h})
	close(served)
	c.Close()
}

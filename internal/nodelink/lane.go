package nodelink

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/internal/rawsock"
)

// Lanes. A pipe costs the kernel less per message than a unix socket, and
// Go's network poller watches every socket for writing as well, so node
// reading a request from one wakes the poller for nothing
// (BenchmarkTransport: 28–31 against 15–17 µs of the caller's CPU per
// request, 34–38 against 32–35 of node's, one at a time). A client made
// with lanes asks a loop, on a new connection to its socket, to open two
// FIFOs the client made beside the socket, SOCKET.lane-TOKEN.in (requests)
// and SOCKET.lane-TOKEN.out (responses), and carries invocations over them
// (the bootstrap's openLane); the socket's connection then closes. It asks
// for a loop's first lane in the background once the loop's first
// invocation has ended, which went over the socket's connection: a new
// node's first invocation that waited for its lane took 6.5 ms longer
// (runtime's BenchmarkFirstInvocation). Once node has taken one, every new
// connection is a lane, and the socket's connections close as their
// invocations end. A loop that does not take one keeps the socket's.
//
// Two serves side by side, the build before lanes against this one: serve
// spent 14.4 µs less per invocation at c=1 (median of 8 pairs) and 4.3 less
// at c=16, node's own CPU did not grow, and c=16 served 11% more requests a
// second.

// LaneHeader carries a lane's token in the request that asks for it. The
// gateway removes x-shoal- headers from clients' requests, so that no
// client can ask for one.
const LaneHeader = "X-Shoal-Lane"

// laneURL is the path of the request that asks for a lane.
const laneURL = "/.shoal-lane"

// laneTimeout bounds the asking for a loop's first lane, which nothing
// waits for.
const laneTimeout = time.Minute

// dialLane dials the loop at path and makes the connection a lane, or
// returns the socket's connection where node did not take the lane.
func dialLane(path string, deadline time.Time) (net.Conn, error) {
	nc, err := dial(path, deadline)
	if err != nil {
		return nil, err
	}
	token := strconv.FormatUint(rand.Uint64(), 36) + strconv.FormatUint(rand.Uint64(), 36)
	in, out := path+".lane-"+token+".in", path+".lane-"+token+".out"
	lane, err := openLane(nc, path, in, out, token, deadline)
	os.Remove(in)
	os.Remove(out)
	if err == nil {
		nc.Close()
		return lane, nil
	}
	if errors.Is(err, errLaneAsked) {
		// The socket's connection is mid-exchange: start again.
		nc.Close()
		return dial(path, deadline)
	}
	return nc, nil
}

// DialLane dials the loop at path and makes the connection a lane, for a
// hop of its own in front of node (bench/relay's rawlane): requests are
// written to w and responses read from r, both with internal/rawsock, and
// c closes the lane. It fails where node does not take the lane.
func DialLane(path string, deadline time.Time) (r io.Reader, w io.Writer, c io.Closer, err error) {
	nc, err := dialLane(path, deadline)
	if err != nil {
		return nil, nil, nil, err
	}
	if _, ok := nc.(*pipeConn); !ok {
		nc.Close()
		return nil, nil, nil, errors.New("nodelink: node did not take the lane")
	}
	r, w = connIO(nc)
	return r, w, nc, nil
}

// errLaneAsked: the lane's request went out, and what came back is not a
// lane.
var errLaneAsked = errors.New("nodelink: node did not take the lane")

// openLane makes the FIFOs in and out, asks node on nc to open them for
// token and opens serve's ends.
func openLane(nc net.Conn, path, in, out, token string, deadline time.Time) (net.Conn, error) {
	for _, name := range []string{in, out} {
		if err := syscall.Mkfifo(name, 0o600); err != nil {
			return nil, err
		}
	}
	// node runs as the socket's owner, which under isolation is not serve.
	if fi, err := os.Stat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
			for _, name := range []string{in, out} {
				if err := os.Chown(name, int(st.Uid), int(st.Gid)); err != nil {
					return nil, err
				}
			}
		}
	}
	// The read end first: node's write end would not open without it.
	r, err := os.OpenFile(out, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if err := ask(nc, token, deadline); err != nil {
		r.Close()
		return nil, err
	}
	w, err := os.OpenFile(in, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: %w", errLaneAsked, err)
	}
	return &pipeConn{r: r, w: w}, nil
}

// ask asks node on nc for the lane of token, and reads its answer whole.
func ask(nc net.Conn, token string, deadline time.Time) error {
	nc.SetDeadline(deadline)
	if _, err := io.WriteString(nc, "GET "+laneURL+" HTTP/1.1\r\nHost: lane\r\n"+LaneHeader+": "+token+"\r\n\r\n"); err != nil {
		return fmt.Errorf("%w: %w", errLaneAsked, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		return fmt.Errorf("%w: %w", errLaneAsked, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s", errLaneAsked, resp.Status)
	}
	return nil
}

// pipeConn is a lane: a connection of two FIFOs, read from r and written
// to w.
type pipeConn struct{ r, w *os.File }

func (p *pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }

// Close closes both ends, the responses end first: node reads the end of
// its request only once nothing it writes after can be read as its answer
// (node answers a request cut mid-body with a 400, which over a lane closed
// the other way round reached the client in place of the 413).
func (p *pipeConn) Close() error {
	rerr := p.r.Close()
	return errors.Join(rerr, p.w.Close())
}

func (p *pipeConn) LocalAddr() net.Addr  { return laneAddr }
func (p *pipeConn) RemoteAddr() net.Addr { return laneAddr }

func (p *pipeConn) SetDeadline(t time.Time) error {
	return errors.Join(p.r.SetDeadline(t), p.w.SetDeadline(t))
}
func (p *pipeConn) SetReadDeadline(t time.Time) error  { return p.r.SetReadDeadline(t) }
func (p *pipeConn) SetWriteDeadline(t time.Time) error { return p.w.SetWriteDeadline(t) }

var laneAddr = &net.UnixAddr{Name: "lane", Net: "unix"}

// connIO is how a connection is read and written: raw (rawsock), each end
// of a lane on its own.
func connIO(nc net.Conn) (io.Reader, io.Writer) {
	if p, ok := nc.(*pipeConn); ok {
		return rawsock.Reader(p.r), rawsock.Writer(p.w)
	}
	return rawsock.Reader(nc), rawsock.Writer(nc)
}

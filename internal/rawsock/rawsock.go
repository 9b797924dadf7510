// Package rawsock reads and writes a socket (or a pipe, as an *os.File)
// with raw system calls, which do not tell Go's scheduler about them,
// through its syscall.RawConn, so that deadlines, Close and the network
// poller work as with its own Read and Write.
//
// A socket's own Read and Write go through syscall.Syscall, whose
// entersyscall wakes the scheduler's monitor thread (sysmon) whenever it
// sleeps because every P was idle. On a server idle between requests
// that is every request: sysmon wakes, sleeps 20 µs, finds nothing and
// sleeps again, three context switches that cost serve a quarter of its CPU
// per invocation at one connection. Go's sockets are non-blocking, so a
// read or write never waits in the kernel and need not tell the scheduler.
package rawsock

import (
	"io"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// Reader returns an io.Reader of c's bytes, or c itself when c has no file
// descriptor in the network poller. One goroutine at a time may read from
// it.
func Reader(c io.Reader) io.Reader {
	if raw := rawConn(c); raw != nil {
		return &reader{raw: raw}
	}
	return c
}

// Writer returns an io.Writer to c, or c itself when c has no file
// descriptor in the network poller. One goroutine at a time may write to
// it. If c has a SetWriteDeadline method, as sockets and files do, the
// writer is a WaitDeadliner.
func Writer(c io.Writer) io.Writer {
	if raw := rawConn(c); raw != nil {
		w := &writer{raw: raw}
		if dl, ok := c.(interface{ SetWriteDeadline(time.Time) error }); ok {
			w.dl = dl
			return waitWriter{w}
		}
		return w
	}
	return c
}

// A WaitDeadliner bounds only the writes that wait, for room in the
// socket's buffer: a write that finds room ends at once, and needs no
// deadline, so the deadline is set on the socket, with its timer, only
// while a write waits. That spares a server that bounds each response's
// writes two timer updates per response, as most responses fit.
type WaitDeadliner interface {
	// SetWaitDeadline sets the time after which a write that waits fails
	// with os.ErrDeadlineExceeded; zero means none. Only the goroutine
	// that writes may call it.
	SetWaitDeadline(t time.Time)
}

// waitWriter is a writer that can set its wait deadline on the socket.
type waitWriter struct{ *writer }

func (w waitWriter) SetWaitDeadline(t time.Time) { w.waitBy = t }

// rawConn is c's RawConn if c has a non-blocking file descriptor (Go's
// sockets and pipes, which are in the network poller), else nil: a raw
// read of a blocking one would hold its thread and P while it waits.
func rawConn(c any) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	nonblocking := false
	err = raw.Control(func(fd uintptr) {
		flags, _, errno := syscall.RawSyscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		nonblocking = errno == 0 && flags&syscall.O_NONBLOCK != 0
	})
	if err != nil || !nonblocking {
		return nil
	}
	return raw
}

type reader struct {
	raw syscall.RawConn
	// The current Read's, kept here so that the callback does not
	// allocate a closure.
	p   []byte
	n   int
	err error
	fn  func(uintptr) bool
}

// Read reads what the socket holds, waiting in the network poller until
// it holds something.
func (r *reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.fn == nil {
		r.fn = r.read
	}
	r.p, r.n, r.err = p, 0, nil
	if err := r.raw.Read(r.fn); err != nil {
		r.p = nil
		return 0, err
	}
	n, err := r.n, r.err
	r.p, r.err = nil, nil
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	return n, err
}

// read is RawConn.Read's callback: false asks the poller to wait.
func (r *reader) read(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.p[0])), uintptr(len(r.p)))
		switch errno {
		case 0:
			r.n = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.err = os.NewSyscallError("read", errno)
		return true
	}
}

type writer struct {
	raw syscall.RawConn
	p   []byte
	n   int
	err error
	fn  func(uintptr) bool
	// The wait deadline (see waitWriter), and where to set it; set says
	// it is on the socket.
	dl     interface{ SetWriteDeadline(time.Time) error }
	waitBy time.Time
	set    bool
}

// Write writes all of p, waiting in the network poller while the socket's
// buffer is full.
func (w *writer) Write(p []byte) (int, error) {
	if w.fn == nil {
		w.fn = w.write
	}
	w.p, w.n, w.err = p, 0, nil
	err := w.raw.Write(w.fn)
	n := w.n
	if err == nil {
		err = w.err
	}
	w.p, w.err = nil, nil
	if w.set {
		w.set = false
		w.dl.SetWriteDeadline(time.Time{})
	}
	return n, err
}

// write is RawConn.Write's callback: false asks the poller to wait.
func (w *writer) write(fd uintptr) bool {
	for w.n < len(w.p) {
		b := w.p[w.n:]
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch errno {
		case 0:
			w.n += int(n)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if !w.set && !w.waitBy.IsZero() {
				// The wait that follows is bounded by it.
				w.set = true
				if err := w.dl.SetWriteDeadline(w.waitBy); err != nil {
					w.err = err
					return true
				}
			}
			return false
		}
		w.err = os.NewSyscallError("write", errno)
		return true
	}
	return true
}

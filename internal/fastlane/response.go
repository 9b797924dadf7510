package fastlane

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// maxUnframed is how much of a body without a Content-Length the response
// holds before its head is written: a handler that writes less and returns
// without flushing gets a Content-Length, as from net/http.
const maxUnframed = 2 << 10

// response is the http.ResponseWriter of a request in the lane. Like
// net/http's it sends its head with the first flush, or with the body once
// the body's framing is known; unlike net/http's it does not copy the
// header map at WriteHeader, so the handler must not change the map after
// it (net/http ignores such changes).
type response struct {
	c      *conn
	req    *http.Request
	header http.Header

	status      int  // 0 until WriteHeader
	sent        bool // the head is in c.bw
	length      int64
	chunked     bool
	written     int64
	deadlineSet bool
	err         error // the first write error: c is broken
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	if code < 100 || code > 999 {
		panic("fastlane: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		// An informational answer goes out at once; the final one is
		// still to come.
		w.writeStatus(code)
		w.header.Write(w.c.bw)
		w.c.bw.WriteString("\r\n")
		w.fail(w.c.bw.Flush())
		return
	}
	w.status = code
}

func (w *response) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if !w.sent {
		if _, known := w.header["Content-Length"]; !known && len(w.c.body)+len(p) <= maxUnframed {
			w.c.body = append(w.c.body, p...)
			return len(p), nil
		}
		w.send(false)
	}
	return w.writeBody(p)
}

// FlushError sends what the response holds, its head first.
func (w *response) FlushError() error {
	if w.err != nil {
		return w.err
	}
	if !w.sent {
		if w.status == 0 {
			w.WriteHeader(http.StatusOK)
		}
		w.send(false)
	}
	w.fail(w.c.bw.Flush())
	return w.err
}

func (w *response) Flush() { w.FlushError() }

// SetWriteDeadline bounds the writes of this response; finish clears it.
// On a socket it bounds only the writes that wait (see
// rawsock.WaitDeadliner), which most do not.
func (w *response) SetWriteDeadline(t time.Time) error {
	w.deadlineSet = true
	if w.c.waits != nil {
		w.c.waits.SetWaitDeadline(t)
		return nil
	}
	return w.c.rwc.SetWriteDeadline(t)
}

func (w *response) SetReadDeadline(t time.Time) error { return w.c.setReadDeadline(t) }

// EnableFullDuplex is net/http's switch for reading a request body while
// responding; the lane's requests have none.
func (w *response) EnableFullDuplex() error { return nil }

func (w *response) fail(err error) {
	if err != nil && w.err == nil {
		w.err = err
	}
}

// send writes the head into c.bw, then what the response holds of the body.
// final says that the handler returned: a held body is then all of it.
func (w *response) send(final bool) {
	w.sent = true
	bw, h, held := w.c.bw, w.header, w.c.body
	w.c.body = w.c.body[:0]
	head := w.req.Method == http.MethodHead
	w.length = -1
	computed := false
	if cl, ok := h["Content-Length"]; ok {
		n, err := strconv.ParseInt(textOf(cl), 10, 64)
		if err == nil && n >= 0 {
			w.length = n
		} else {
			delete(h, "Content-Length")
		}
	}
	allowed := bodyAllowed(w.status)
	if w.length < 0 && final && allowed && (!head || len(held) > 0) {
		w.length, computed = int64(len(held)), true
	}
	if _, ok := h["Content-Type"]; !ok && allowed && len(held) > 0 {
		h["Content-Type"] = []string{http.DetectContentType(held)}
	}
	w.chunked = allowed && !head && w.length < 0
	delete(h, "Transfer-Encoding")
	w.writeStatus(w.status)
	h.Write(bw)
	if computed {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), w.length, 10))
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if _, ok := h["Date"]; !ok {
		bw.Write(dateLine())
	}
	if _, ok := h["Connection"]; !ok && w.req.Close {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	if len(held) > 0 {
		w.writeBody(held)
	}
}

func (w *response) writeStatus(code int) {
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	}
	bw.WriteString("\r\n")
}

func (w *response) writeBody(p []byte) (int, error) {
	if w.req.Method == http.MethodHead {
		return len(p), nil
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	bw := w.c.bw
	if w.chunked {
		if len(p) == 0 {
			return 0, nil
		}
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	w.fail(err)
	return n, err
}

// finish ends the response after the handler returned and reports whether
// the connection may carry another request.
func (w *response) finish() bool {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sent {
		w.send(true)
	}
	if w.chunked && w.err == nil {
		w.c.bw.WriteString("0\r\n\r\n")
	}
	w.fail(w.c.bw.Flush())
	if w.deadlineSet {
		w.SetWriteDeadline(time.Time{})
	}
	short := w.length >= 0 && w.written < w.length && w.req.Method != http.MethodHead && bodyAllowed(w.status)
	_, closing := w.header["Connection"]
	if closing {
		closing = httpguts.HeaderValuesContainsToken(w.header["Connection"], "close")
	}
	return w.err == nil && !short && !closing
}

// bodyAllowed reports whether a response of status may have a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

func textOf(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// dated is the Date header line of one second.
type dated struct {
	sec  int64
	line []byte
}

var date atomic.Pointer[dated]

// dateLine returns the Date header line for now, made once a second.
func dateLine() []byte {
	now := time.Now()
	if d := date.Load(); d != nil && d.sec == now.Unix() {
		return d.line
	}
	line := append([]byte("Date: "), now.UTC().AppendFormat(nil, http.TimeFormat)...)
	line = append(line, "\r\n"...)
	date.Store(&dated{sec: now.Unix(), line: line})
	return line
}

package bench

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// backendHeader carries the backend's base URL to every invocation.
const backendHeader = "x-bench-backend"

// maxBackendWait bounds ?ms= so that a bad query cannot hold a connection.
const maxBackendWait = time.Minute

// backendHandler is what the workloads call:
//
//	GET /wait?ms=N             answers a small body after N ms
//	GET /stream?ms=N&chunks=K  sends K chunks, one every N/K ms starting at
//	                           once, flushing each, and ends after N ms
func backendHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /wait", func(w http.ResponseWriter, r *http.Request) {
		d, err := durationParam(r, "ms")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !sleep(r, d) {
			return
		}
		fmt.Fprintf(w, "waited %d ms", d.Milliseconds())
	})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		d, err := durationParam(r, "ms")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		chunks, err := strconv.Atoi(r.URL.Query().Get("chunks"))
		if err != nil || chunks < 1 || chunks > 10_000 {
			http.Error(w, "chunks: want 1 to 10000", http.StatusBadRequest)
			return
		}
		w.Header().Set("content-type", "text/plain; charset=utf-8")
		flusher := http.NewResponseController(w)
		start := time.Now()
		gap := d / time.Duration(chunks)
		for i := range chunks {
			if !sleep(r, time.Until(start.Add(time.Duration(i)*gap))) {
				return
			}
			fmt.Fprintf(w, "chunk %d of %d\n", i+1, chunks)
			if flusher.Flush() != nil {
				return
			}
		}
		sleep(r, time.Until(start.Add(d)))
	})
	return mux
}

// durationParam reads the query parameter name as whole milliseconds.
func durationParam(r *http.Request, name string) (time.Duration, error) {
	ms, err := strconv.Atoi(r.URL.Query().Get(name))
	d := time.Duration(ms) * time.Millisecond
	if err != nil || d < 0 || d > maxBackendWait {
		return 0, fmt.Errorf("%s: want milliseconds from 0 to %d", name, maxBackendWait.Milliseconds())
	}
	return d, nil
}

// sleep waits d, or less if the client goes away; it reports whether the
// client is still there.
func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return r.Context().Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

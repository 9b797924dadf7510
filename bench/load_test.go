package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// inFlight counts the requests a handler is serving, and the most at once.
type inFlight struct {
	mu       sync.Mutex
	now, max int
}

func (f *inFlight) enter() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now++
	f.max = max(f.max, f.now)
}

func (f *inFlight) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now--
}

func (f *inFlight) peak() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.max
}

// slowServer sends /ok's headers at once and ends its body after a second,
// and answers /fail at once with a 500.
func slowServer(t *testing.T, f *inFlight) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		f.enter()
		defer f.leave()
		if r.Header.Get(backendHeader) != "http://backend" {
			http.Error(w, "no backend header", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		sleep(r, time.Second)
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "failed", http.StatusInternalServerError)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// target sends every arrival to url.
func target(url string) func() vegeta.Target {
	t := vegeta.Target{Method: http.MethodGet, URL: url, Header: http.Header{backendHeader: {"http://backend"}}}
	return func() vegeta.Target { return t }
}

func TestAttack_OpenLoop(t *testing.T) {
	var f inFlight
	srv := slowServer(t, &f)
	tr := newTransport()
	defer tr.CloseIdleConnections()
	// 40 arrivals in a second, each answered after a second: open-loop,
	// nearly all are in flight at once, beyond vegeta's 10 first workers.
	var shown int
	s := attack(t.Context(), tr, target(srv.URL+"/ok"), newPacer(Constant, 40, time.Second, 1, 0), time.Second,
		func(time.Duration, int, int, int) { shown++ })
	if s.sent != 40 || s.ok != 40 || s.failed != 0 {
		t.Errorf("sent %d, ok %d, failed %d; want 40, 40, 0", s.sent, s.ok, s.failed)
	}
	if got := f.peak(); got < 30 {
		t.Errorf("at most %d requests in flight at once, want 30 or more", got)
	}
	if took := s.end.Sub(s.start); took > 5*time.Second {
		t.Errorf("slice took %s, want about 2s", took)
	}
	if len(s.latencies) != 40 || len(s.ttfbs) != 40 {
		t.Fatalf("%d latencies, %d ttfbs; want 40 each", len(s.latencies), len(s.ttfbs))
	}
	for i := range s.latencies {
		if s.latencies[i] < time.Second || s.ttfbs[i] >= time.Second {
			t.Errorf("latency %s, ttfb %s; want a second or more, and less (headers come at once)", s.latencies[i], s.ttfbs[i])
			break
		}
	}
	if shown == 0 {
		t.Errorf("no progress shown")
	}
}

func TestAttack_Errors(t *testing.T) {
	srv := slowServer(t, &inFlight{})
	tr := newTransport()
	defer tr.CloseIdleConnections()
	s := attack(t.Context(), tr, target(srv.URL+"/fail"), newPacer(Constant, 20, time.Second, 1, 0), time.Second,
		func(time.Duration, int, int, int) {})
	if s.sent != 20 || s.ok != 0 || s.failed != 20 {
		t.Errorf("sent %d, ok %d, failed %d; want 20, 0, 20", s.sent, s.ok, s.failed)
	}
	if len(s.latencies) != 0 || len(s.ttfbs) != 0 {
		t.Errorf("%d latencies, %d ttfbs of failures; want none", len(s.latencies), len(s.ttfbs))
	}
}

func TestAttack_Cancel(t *testing.T) {
	var f inFlight
	srv := slowServer(t, &f)
	tr := newTransport()
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan slice, 1)
	go func() {
		done <- attack(ctx, tr, target(srv.URL+"/ok"), newPacer(Constant, 20, 10*time.Second, 1, 0), 10*time.Second,
			func(time.Duration, int, int, int) {})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for f.peak() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no 3 requests in flight after 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case s := <-done:
		if s.sent >= 200 || s.failed == 0 {
			t.Errorf("sent %d, failed %d; want sending stopped and requests in flight cancelled", s.sent, s.failed)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("attack still running 2 s after its context ended")
	}
}

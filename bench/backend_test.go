package bench

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestBackend_Wait(t *testing.T) {
	srv := httptest.NewServer(backendHandler())
	defer srv.Close()
	start := time.Now()
	resp, err := http.Get(srv.URL + "/wait?ms=100")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil || resp.StatusCode != 200 || string(body) != "waited 100 ms" {
		t.Fatalf("got %d %q %v; want 200 %q", resp.StatusCode, body, err, "waited 100 ms")
	}
	if took < 100*time.Millisecond {
		t.Errorf("answered after %s, want at least 100ms", took)
	}
}

func TestBackend_Stream(t *testing.T) {
	srv := httptest.NewServer(backendHandler())
	defer srv.Close()
	start := time.Now()
	resp, err := http.Get(srv.URL + "/stream?ms=400&chunks=4")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	var at []time.Duration
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		at = append(at, time.Since(start))
	}
	end := time.Since(start)
	want := []string{"chunk 1 of 4", "chunk 2 of 4", "chunk 3 of 4", "chunk 4 of 4"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("got chunks %q, want %q", lines, want)
	}
	// Chunk i is due at i × 100 ms, and must come then, not with the
	// end of the body.
	if at[0] > 300*time.Millisecond { // well before the end, at 400 ms
		t.Errorf("first chunk after %s, want it at once", at[0])
	}
	for i := 1; i < len(at); i++ {
		if due := time.Duration(i) * 100 * time.Millisecond; at[i] < due {
			t.Errorf("chunk %d after %s, want it at %s", i+1, at[i], due)
		}
	}
	if end < 400*time.Millisecond {
		t.Errorf("body ended after %s, want at least 400ms", end)
	}
}

func TestBackend_BadQuery(t *testing.T) {
	srv := httptest.NewServer(backendHandler())
	defer srv.Close()
	for _, path := range []string{"/wait", "/wait?ms=x", "/wait?ms=-1", "/wait?ms=600000", "/stream?ms=10", "/stream?ms=10&chunks=0"} {
		t.Run(strings.NewReplacer("/", "", "?", "_", "&", "_", "=", "_").Replace(path), func(t *testing.T) {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("GET %s: got %d, want 400", path, resp.StatusCode)
			}
		})
	}
}

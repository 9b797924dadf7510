package tunnel

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
)

// LoopsHeader carries, on a request of its own, the number of event loops
// the invoker asks the instance to run (PROTOCOL.md). Clients cannot send
// it: the gateway drops x-shoal-* headers.
const LoopsHeader = "x-shoal-loops"

// loopsKey is LoopsHeader as http.Header keys it (see reportKey).
var loopsKey = http.CanonicalHeaderKey(LoopsHeader)

// WithLoops serves h, except that a request carrying LoopsHeader calls set
// with the number it carries and is answered 204, or 400 when the number
// is not one.
func WithLoops(h http.Handler, set func(n int) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header[loopsKey]
		if len(v) == 0 {
			h.ServeHTTP(w, r)
			return
		}
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 {
			http.Error(w, "bad "+LoopsHeader, http.StatusBadRequest)
			return
		}
		if err := set(n); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// SetLoops asks the instance to run n event loops in all. The instance's
// reports say how many serve.
func (c *Conn) SetLoops(ctx context.Context, n int) error {
	req, err := http.NewRequestWithContext(ctx, "POST", "http://instance/", http.NoBody)
	if err != nil {
		return err
	}
	req.Header.Set(LoopsHeader, strconv.Itoa(n))
	res, err := c.RoundTrip(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		return fmt.Errorf("tunnel: loops: status %d", res.StatusCode)
	}
	return nil
}

package e2e

import (
	"testing"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// A function whose paths differ runs the path that computes before its
// first await on instances of its own, once an invocation has shown it,
// while the path that waits stays on its instance.
func TestLanes_ComputingPathGetsInstancesOfItsOwn(t *testing.T) {
	s := testutil.StartServe(t, testutil.ServeOptions{})
	url := s.Deploy(testutil.WriteProject(t, "lanes", map[string]string{"index.mjs": instanceJS + `
const spin = (ms) => { const end = performance.now() + ms; while (performance.now() < end); };
export default {
  async fetch(request) {
    if (new URL(request.url).pathname === '/cpu') spin(50);
    else await new Promise((r) => setTimeout(r, 5));
    return new Response(instance);
  },
};
`}))
	pid := func(path string) string {
		t.Helper()
		code, body, resp := testutil.Get(t, url+path)
		if code != 200 || resp.Header.Get("x-shoal-entry-ms") != "" {
			t.Fatalf("GET %s: %d %q, entry header %q; want 200 without it", path, code, body, resp.Header.Get("x-shoal-entry-ms"))
		}
		return body
	}
	// A few calls of /io first: its average is light even if the first
	// call, which compiles the handler, was slow on a loaded machine.
	light := pid("io")
	for range 4 {
		if got := pid("io"); got != light {
			t.Fatalf("/io ran in %s and then %s, want one instance", light, got)
		}
	}
	if got := pid("cpu"); got != light {
		t.Errorf("the first /cpu ran in %s, want the one instance %s: nothing is known of it yet", got, light)
	}
	heavy := pid("cpu")
	if heavy == light {
		t.Fatalf("/cpu, known to compute for 50 ms, still runs beside /io in %s", light)
	}
	for range 3 {
		if got := pid("io"); got != light {
			t.Errorf("/io ran in %s, want its instance %s", got, light)
		}
		if got := pid("cpu"); got != heavy {
			t.Errorf("/cpu ran in %s, want its instance %s", got, heavy)
		}
	}
}

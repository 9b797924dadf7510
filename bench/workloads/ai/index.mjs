// ai: relays a 2 s streamed response from the benchmark's backend (20
// chunks, like tokens from a model) chunk by chunk as they arrive. The
// backend's URL comes in x-bench-backend.
export default {
  async fetch(request) {
    const backend = request.headers.get('x-bench-backend');
    if (!backend) return new Response('no x-bench-backend header\n', { status: 400 });
    const upstream = await fetch(`${backend}/stream?ms=2000&chunks=20`);
    return new Response(upstream.body, {
      status: upstream.status,
      headers: { 'content-type': 'text/plain; charset=utf-8' },
    });
  },
};

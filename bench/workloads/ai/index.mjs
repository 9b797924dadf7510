// ai: relays a 2 s streamed response from the benchmark's backend (20
// chunks, like tokens from a model) chunk by chunk as they arrive. The
// backend's URL comes in x-bench-backend.
import { backendURL } from './work.mjs';

export default {
  async fetch(request) {
    const backend = backendURL(request);
    if (backend instanceof Response) return backend;
    const upstream = await fetch(`${backend}/stream?ms=2000&chunks=20`);
    return new Response(upstream.body, {
      status: upstream.status,
      headers: { 'content-type': 'text/plain; charset=utf-8' },
    });
  },
};

// seed: 50 ms of CPU, then one 50 ms call to the benchmark's backend; the
// example of the design's "why it exists". The backend's URL comes in
// x-bench-backend.
import { backendURL, spin } from './work.mjs';

export default {
  async fetch(request) {
    const backend = backendURL(request);
    if (backend instanceof Response) return backend;
    spin(50);
    const upstream = await fetch(`${backend}/wait?ms=50`);
    const body = await upstream.text();
    return new Response(`seed: ${body}\n`);
  },
};

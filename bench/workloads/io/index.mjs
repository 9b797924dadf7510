// io: one 100 ms call to the benchmark's backend and about 1 ms of CPU; an
// invocation that mostly waits. The backend's URL comes in x-bench-backend.
import { backendURL, spin } from './work.mjs';

export default {
  async fetch(request) {
    const backend = backendURL(request);
    if (backend instanceof Response) return backend;
    const upstream = await fetch(`${backend}/wait?ms=100`);
    const body = await upstream.text();
    spin(1);
    return new Response(`io: ${body}\n`);
  },
};

// mixed: one function whose routes differ: /io makes one 100 ms call to
// the benchmark's backend with about 1 ms of CPU, /cpu spends 50 ms of
// CPU. The backend's URL comes in x-bench-backend.
import { backendURL, spin } from './work.mjs';

export default {
  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (pathname.endsWith('/cpu')) {
      spin(50);
      return new Response('mixed cpu\n');
    }
    const backend = backendURL(request);
    if (backend instanceof Response) return backend;
    const upstream = await fetch(`${backend}/wait?ms=100`);
    const body = await upstream.text();
    spin(1);
    return new Response(`mixed io: ${body}\n`);
  },
};

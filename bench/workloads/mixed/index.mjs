// mixed: one function whose routes differ: /io makes one 100 ms call to
// the benchmark's backend with about 1 ms of CPU, /cpu spends 50 ms of
// CPU. The backend's URL comes in x-bench-backend.

// spin burns ms of CPU time, measured with process.cpuUsage so that
// contention for the CPU does not shorten it. process.cpuUsage is
// process-wide: CPU that node's other threads (GC, libuv) spend meanwhile
// counts too.
function spin(ms) {
  const start = process.cpuUsage();
  for (;;) {
    const used = process.cpuUsage(start);
    if (used.user + used.system >= ms * 1000) return;
  }
}

export default {
  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (pathname.endsWith('/cpu')) {
      spin(50);
      return new Response('mixed cpu\n');
    }
    const backend = request.headers.get('x-bench-backend');
    if (!backend) return new Response('no x-bench-backend header\n', { status: 400 });
    const upstream = await fetch(`${backend}/wait?ms=100`);
    const body = await upstream.text();
    spin(1);
    return new Response(`mixed io: ${body}\n`);
  },
};

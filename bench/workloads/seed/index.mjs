// seed: 50 ms of CPU, then one 50 ms call to the benchmark's backend; the
// example of the design's "why it exists". The backend's URL comes in
// x-bench-backend.

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
    const backend = request.headers.get('x-bench-backend');
    if (!backend) return new Response('no x-bench-backend header\n', { status: 400 });
    spin(50);
    const upstream = await fetch(`${backend}/wait?ms=50`);
    const body = await upstream.text();
    return new Response(`seed: ${body}\n`);
  },
};

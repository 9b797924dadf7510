// io: one 100 ms call to the benchmark's backend and about 1 ms of CPU; an
// invocation that mostly waits. The backend's URL comes in x-bench-backend.

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
    const upstream = await fetch(`${backend}/wait?ms=100`);
    const body = await upstream.text();
    spin(1);
    return new Response(`io: ${body}\n`);
  },
};

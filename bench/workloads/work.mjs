// work.mjs: what the workloads have in common. The benchmark copies it into
// each workload's project folder, next to index.mjs.

// spin burns ms of CPU time, measured with process.cpuUsage so that
// contention for the CPU does not shorten it. process.cpuUsage is
// process-wide: CPU that node's other threads (GC, libuv) spend meanwhile
// counts too.
export function spin(ms) {
  const start = process.cpuUsage();
  for (;;) {
    const used = process.cpuUsage(start);
    if (used.user + used.system >= ms * 1000) return;
  }
}

// backendURL is the benchmark backend's URL, which comes in the
// x-bench-backend header: a string, or a 400 Response when it is missing.
export function backendURL(request) {
  const url = request.headers.get('x-bench-backend');
  return url || new Response('no x-bench-backend header\n', { status: 400 });
}

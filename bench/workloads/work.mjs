// work.mjs: what the workloads have in common. The benchmark copies it into
// each workload's project folder, next to index.mjs.

import { readFileSync } from 'node:fs';

// threadCPU is the CPU time the calling thread has used, in ns, from
// /proc/thread-self/schedstat; 0 where that is not there.
function threadCPU() {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ', 1)[0]) || 0;
  } catch {
    return 0;
  }
}

let sink = 0;

// spin burns ms of CPU time of the calling thread, so that contention for
// the CPU does not shorten it, and neither does what other threads of the
// process compute meanwhile (an instance's other event loops, GC). Where
// the thread's CPU time cannot be read it falls back to the process's
// (process.cpuUsage), which other threads' work shortens.
export function spin(ms) {
  const start = threadCPU();
  if (start === 0) {
    const began = process.cpuUsage();
    for (;;) {
      const used = process.cpuUsage(began);
      if (used.user + used.system >= ms * 1000) return;
    }
  }
  for (;;) {
    for (let i = 0; i < 2000; i++) sink = (sink + Math.sqrt(i)) % 1e9;
    if (threadCPU() - start >= ms * 1e6) return;
  }
}

// backendURL is the benchmark backend's URL, which comes in the
// x-bench-backend header: a string, or a 400 Response when it is missing.
export function backendURL(request) {
  const url = request.headers.get('x-bench-backend');
  return url || new Response('no x-bench-backend header\n', { status: 400 });
}

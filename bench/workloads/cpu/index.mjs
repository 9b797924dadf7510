// cpu: 50 ms of CPU and no I/O; concurrency cannot help it.

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
  fetch() {
    spin(50);
    return new Response('cpu\n');
  },
};

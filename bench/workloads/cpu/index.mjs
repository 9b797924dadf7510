// cpu: 50 ms of CPU and no I/O; concurrency cannot help it.
import { spin } from './work.mjs';

export default {
  fetch() {
    spin(50);
    return new Response('cpu\n');
  },
};

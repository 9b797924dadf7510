// hello: no work; what the platform itself costs per invocation.
export default {
  fetch() {
    return new Response('hello\n');
  },
};

// The same hello world as examples/hello, in a bare node http server: the
// baseline that bench/hello.sh measures shoal against. Given a socket path
// too, the same process serves it there as well, for bench/relay.
import http from 'node:http';
import handler from '../examples/hello/index.mjs';

const port = Number(process.argv[2] ?? 3901);
http.createServer(handler).listen(port, '127.0.0.1', () => console.log(`listening on ${port}`));
if (process.argv[3]) {
  http.createServer(handler).listen(process.argv[3], () => console.log(`listening on ${process.argv[3]}`));
}

// The same hello world as examples/hello, in a bare node http server: the
// baseline that bench/hello.sh measures shoal against.
import http from 'node:http';
import handler from '../examples/hello/index.mjs';

const port = Number(process.argv[2] ?? 3901);
http.createServer(handler).listen(port, '127.0.0.1', () => console.log(`listening on ${port}`));

// The same hello world as examples/hello, in a bare node http server: the
// baseline that bench/hello.sh measures shoal against. Given a socket path
// too, the same process serves it there as well, for bench/relay, and
// takes lanes on it as the bootstrap does (bench/relay -lanes): a request
// to /.shoal-lane with an x-shoal-lane token opens the FIFOs
// SOCKET.lane-TOKEN.in (requests) and .out (responses), which the server
// then serves as one more connection.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import handler from '../examples/hello/index.mjs';

const port = Number(process.argv[2] ?? 3901);
http.createServer(handler).listen(port, '127.0.0.1', () => console.log(`listening on ${port}`));
const socket = process.argv[3];
if (socket) {
  const server = http.createServer((req, res) => {
    const token = req.headers['x-shoal-lane'];
    if (req.url !== '/.shoal-lane' || !/^[0-9a-z]{1,40}$/.test(token ?? '')) {
      handler(req, res);
      return;
    }
    const base = `${socket}.lane-${token}`;
    const rfd = fs.openSync(`${base}.in`, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const wfd = fs.openSync(`${base}.out`, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    // As the bootstrap's laneSocket: the requests FIFO's socket, its
    // writes sent to the responses FIFO's.
    const wr = new net.Socket({ fd: wfd, readable: false, writable: true });
    const lane = new net.Socket({ fd: rfd, readable: true, writable: true });
    lane._writeGeneric = (writev, data, encoding, cb) => (writev ? wr._writev(data, cb) : wr._write(data, encoding, cb));
    lane._final = (cb) => {
      wr.end();
      cb();
    };
    lane.once('close', () => wr.destroy());
    server.emit('connection', lane);
    res.end();
  });
  server.listen(socket, () => console.log(`listening on ${socket}`));
}

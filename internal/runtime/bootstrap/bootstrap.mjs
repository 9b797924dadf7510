// shoal bootstrap: loads one user bundle into this node process and serves many
// concurrent invocations of it over HTTP/1.1 on a unix socket. Node 20+, node
// built-ins only. Embedded in the shoal binary (internal/runtime/bootstrap).
//
// Contract with the Go supervisor (internal/runtime). Keep it exactly; the Go
// side and bootstrap_test.go depend on it.
//
//   Start:  node --enable-source-maps BOOTSTRAP_PATH SOCKET_PATH BUNDLE_PATH
//           cwd = the bundle's folder. fd 3 is a pipe to the runtime (the
//           "control pipe"). stdout and stderr are pipes too; they carry only
//           what bypasses the patched streams below (fs.writeSync(1, ...),
//           loggers that write to fd 1 directly, native code, node's own fatal
//           errors), with no invocation id.
//
//   Load:   import(BUNDLE_PATH). The handler is the module's default export,
//           unwrapped while it is an object without a `fetch` method that has a
//           `default` property (CommonJS interop, `export default { default }`).
//           If there is no default export but the module exports a `fetch`
//           function, the module namespace is the handler.
//             function             -> Node style: handler(req, res)
//             object with fetch()  -> Web style: obj.fetch(request, ctx), called
//                                     as a method; returns a Response or a
//                                     promise of one
//             anything else        -> control {"type":"error","msg":...}, exit 1
//           A bundle that fails to load (syntax error, missing import, throw at
//           top level) -> control {"type":"error","msg":"load <path>: <stack>"},
//           exit 1. For a syntax error the message is node's own report with
//           file:line and a caret (from `node --check`, run only then).
//
//   Serve:  an http.Server on the unix socket SOCKET_PATH (a stale socket file
//           there is removed first). requestTimeout and headersTimeout are off
//           (the runtime enforces deadlines), keepAliveTimeout is 10 minutes,
//           maxHeaderSize 64 KiB, no Host header needed. When it listens:
//           control {"type":"ready"}. A listen error -> control error, exit 1.
//
//   Control pipe (fd 3): newline-delimited JSON, written with fs.writeSync, so
//   in the order things happened, and node blocks while the pipe is full: the
//   runtime must keep reading it. Messages:
//     {"type":"ready"}
//     {"type":"error","msg":"..."}
//     {"type":"log","id":"<invocation id or empty>","stream":"stdout"|"stderr",
//      "msg":"<one line, no trailing newline>","ts":<epoch ms>}
//     {"type":"load","elu":<0..1>,"eld_mean":<ms>,"eld_max":<ms>}
//       every 100 ms once serving: the event loop's utilisation over the
//       last interval and how late a 10 ms timer ran (mean and max). A loop
//       blocked by user code sends nothing until it unblocks.
//     {"type":"waited","id":"<invocation id>","from":<epoch ms>,"to":<epoch ms>}
//       an invocation's waitUntil work outlived its response: from is when
//       the response closed, to when the last of its waitUntil promises
//       settled. Not sent when they all settled before the response closed.
//   If fd 3 is not open or nobody reads it any more (EBADF/EPIPE), the same
//   lines go to stderr instead, so the bootstrap also runs by hand.
//
//   Invocations: each request carries the header x-shoal-id, the invocation
//   id. It stays visible to user code (harmless; removing it would cost a
//   header copy per request). Each request gets its own AsyncLocalStorage
//   store; it is in effect for the handler and everything it starts, and also
//   for the events node emits later on that request's req and res ('data',
//   'end', 'close', 'finish'; see enter() below for how).
//
//   Logs: console.log/info/debug/warn/error/trace (formatted with util.format,
//   console.group indentation kept) and process.stdout.write /
//   process.stderr.write are replaced. Each line becomes one log record with
//   the id of the current invocation (empty outside one). One write with many
//   lines gives one record per line; a trailing partial line is a record of its
//   own (writes are never joined, so a multi-byte character split across two
//   Buffer writes is garbled); a trailing \r is dropped. console.log/info/debug
//   and stdout -> "stdout"; console.warn/error/trace and stderr -> "stderr".
//
//   Errors. The bootstrap's own responses have an empty body and the header
//   x-shoal-error:
//     The handler throws, its promise rejects, or fetch throws or rejects
//       -> a stderr record with the stack; then if the response has not
//          started: 500 FUNCTION_INVOCATION_FAILED (headers the user set are
//          dropped), and if it has: the response is destroyed.
//     Node style: the handler returned a thenable that resolved, and one
//       setImmediate later the response has not started
//       -> 502 NO_RESPONSE_FROM_FUNCTION. A handler that returns anything else
//          may respond later, from a callback.
//     Web style: fetch produced something that is not a Response (checked with
//       instanceof, or by shape for a polyfill's Response)
//       -> a stderr record, 502 NO_RESPONSE_FROM_FUNCTION.
//     Web style: the Response's body stream errors mid-way
//       -> a stderr record, the response is destroyed.
//     'unhandledRejection' -> a stderr record "Unhandled Rejection: ...", with
//       the id of the context the promise was rejected in; node keeps running.
//     'uncaughtException' -> a stderr record "Uncaught Exception: ..."; if it
//       was thrown in an invocation's context and that response has not
//       started: 500 FUNCTION_INVOCATION_FAILED with `connection: close` (an
//       exception thrown out of an HTTP parser callback breaks that
//       connection's parser). A response already started is left alone. Node
//       keeps running. Node 20 keeps the store of the failing callback visible
//       in the handler (timers, immediates, nextTick, I/O callbacks, emitters).
//     process.exit() from user code exits; the runtime deals with that.
//
//   Web style details: the Request's URL is http://<Host header><req.url>; its
//   headers are the raw request headers; its body is Readable.toWeb(req) with
//   duplex 'half' unless the method is GET or HEAD; request.signal aborts when
//   the client goes away (res 'close' before the response finished), which
//   also cancels the Response body being written. ctx.waitUntil(p) keeps p
//   referenced until it settles and logs a rejection as a stderr record. The
//   Response's status, statusText and headers are written (each Set-Cookie
//   kept apart; connection, keep-alive and transfer-encoding dropped, node
//   frames the body itself), then the body chunk by chunk as the stream yields
//   it, honouring backpressure ('drain'). No body for HEAD, 204 and 304.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { AsyncLocalStorage } from 'node:async_hooks';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { format, inspect } from 'node:util';

const CONTROL_FD = 3;
const [socketPath, bundlePath] = process.argv.slice(2);

// ---------------------------------------------------------------------------
// Control pipe.

let controlFd = CONTROL_FD;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));

// writeControl writes text (whole lines) synchronously. A non-blocking pipe
// that is full (EAGAIN) is retried after a millisecond; a pipe nobody reads
// any more makes the bootstrap fall back to its own stderr.
function writeControl(text) {
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(controlFd, buf, off, buf.length - off);
    } catch (err) {
      if (err.code === 'EAGAIN') {
        Atomics.wait(sleepCell, 0, 0, 1);
      } else if (controlFd !== 2 && (err.code === 'EBADF' || err.code === 'EPIPE')) {
        controlFd = 2;
        off = 0;
      } else {
        return; // nowhere left to report to
      }
    }
  }
}

function fatal(msg) {
  writeControl('{"type":"error","msg":' + JSON.stringify(msg) + '}\n');
  process.exit(1);
}

// ---------------------------------------------------------------------------
// Invocations and logs.

const als = new AsyncLocalStorage();

// Invocation is the AsyncLocalStorage store of one request.
class Invocation {
  constructor(id, req, res) {
    this.id = id;
    this.req = req;
    this.res = res;
    this.idJSON = undefined; // JSON.stringify(id), made on the first log line
    this.ac = undefined; // Web style: AbortController behind request.signal
    this.reader = undefined; // Web style: reader of the response body
    this.waiting = 0; // waitUntil promises that have not settled
    this.closedAt = 0; // epoch ms when the response closed; 0 before
  }
}

const NO_ID = '""';

// writeLines turns text into one log record per line and writes them all with
// one system call. A final line without '\n' is still a record; a final '\n'
// does not start an empty one.
function writeLines(inv, stream, text) {
  const n = text.length;
  if (n === 0) return;
  let id = NO_ID;
  if (inv !== undefined) {
    id = inv.idJSON;
    if (id === undefined) id = inv.idJSON = JSON.stringify(inv.id);
  }
  const head = '{"type":"log","id":' + id + ',"stream":"' + stream + '","msg":';
  const tail = ',"ts":' + Date.now() + '}\n';
  let out = '';
  let start = 0;
  while (start < n) {
    const nl = text.indexOf('\n', start);
    const stop = nl === -1 ? n : nl;
    let end = stop;
    if (end > start && text.charCodeAt(end - 1) === 13) end--; // \r\n
    out += head + JSON.stringify(text.slice(start, end)) + tail;
    if (nl === -1) break;
    start = nl + 1;
  }
  writeControl(out);
}

function log(stream, text) {
  writeLines(als.getStore(), stream, text);
}

// describe renders a thrown value like node does for an uncaught one: for an
// Error its stack plus `cause` and own properties (code, errno...).
function describe(err) {
  try {
    return inspect(err);
  } catch {
    return String(err);
  }
}

// Streams and console.

function toText(chunk, encoding) {
  if (typeof chunk === 'string') {
    if (typeof encoding === 'string' && encoding !== 'utf8' && encoding !== 'utf-8' &&
        Buffer.isEncoding(encoding)) {
      return Buffer.from(chunk, encoding).toString('utf8');
    }
    return chunk;
  }
  if (chunk instanceof Uint8Array) {
    return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
  }
  return String(chunk);
}

function patchStream(stream, name) {
  stream.write = function write(chunk, encoding, cb) {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    log(name, toText(chunk, encoding));
    if (typeof cb === 'function') process.nextTick(cb, null);
    return true;
  };
}

patchStream(process.stdout, 'stdout');
patchStream(process.stderr, 'stderr');

// console.group indentation, process-wide as in node's own console.
let indent = '';

function consoleWrite(stream, text) {
  if (indent !== '') text = indent + text.slice(0, -1).replaceAll('\n', '\n' + indent) + '\n';
  writeLines(als.getStore(), stream, text);
}

console.log = function log(...args) { consoleWrite('stdout', format(...args) + '\n'); };
console.info = function info(...args) { consoleWrite('stdout', format(...args) + '\n'); };
console.debug = function debug(...args) { consoleWrite('stdout', format(...args) + '\n'); };
console.warn = function warn(...args) { consoleWrite('stderr', format(...args) + '\n'); };
console.error = function error(...args) { consoleWrite('stderr', format(...args) + '\n'); };
console.trace = function trace(...args) {
  const err = { name: 'Trace', message: format(...args) };
  Error.captureStackTrace(err, trace);
  consoleWrite('stderr', err.stack + '\n');
};
console.group = console.groupCollapsed = function group(...labels) {
  if (labels.length > 0) console.log(...labels);
  indent += '  ';
};
console.groupEnd = function groupEnd() {
  indent = indent.slice(0, -2);
};

// ---------------------------------------------------------------------------
// Responses the platform writes.

const FAILED = 'FUNCTION_INVOCATION_FAILED';
const NO_RESPONSE = 'NO_RESPONSE_FROM_FUNCTION';

function started(res) {
  return res.headersSent || res.writableEnded || res.destroyed;
}

const ERROR_HEADERS = {
  500: { 'x-shoal-error': FAILED, 'content-length': '0' },
  502: { 'x-shoal-error': NO_RESPONSE, 'content-length': '0' },
};
// An exception thrown out of an HTTP parser callback (a 'data' listener, say)
// leaves that connection's parser broken: the next request on it would get a
// 400 from node. So the answer to an uncaught exception closes the connection.
const UNCAUGHT_HEADERS = { 'x-shoal-error': FAILED, 'content-length': '0', 'connection': 'close' };

// respondError answers with status and the headers of ERROR_HEADERS[status]
// (or headers), dropping any header the user set but did not send.
function respondError(res, status, headers = ERROR_HEADERS[status]) {
  try {
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    res.writeHead(status, headers);
    res.end();
  } catch {
    res.destroy();
  }
}

// fail handles an error that ended an invocation: the handler threw or its
// promise rejected.
function fail(inv, err) {
  writeLines(inv, 'stderr', describe(err) + '\n');
  const res = inv.res;
  if (!started(res)) respondError(res, 500);
  else if (!res.writableEnded) res.destroy();
}

process.on('unhandledRejection', (reason) => {
  writeLines(als.getStore(), 'stderr', 'Unhandled Rejection: ' + describe(reason) + '\n');
});

process.on('uncaughtException', (err) => {
  const inv = als.getStore();
  writeLines(inv, 'stderr', 'Uncaught Exception: ' + describe(err) + '\n');
  if (inv instanceof Invocation && !started(inv.res)) respondError(inv.res, 500, UNCAUGHT_HEADERS);
});

// ---------------------------------------------------------------------------
// Node style: handler(req, res).

function afterNodeHandler(inv) {
  setImmediate(checkResponded, inv);
}

function checkResponded(inv) {
  if (!started(inv.res)) respondError(inv.res, 502);
}

function serveNode(handler, inv, req, res) {
  try {
    const ret = handler(req, res);
    if (ret !== null && (typeof ret === 'object' || typeof ret === 'function') &&
        typeof ret.then === 'function') {
      ret.then(() => afterNodeHandler(inv), (err) => fail(inv, err));
    }
  } catch (err) {
    fail(inv, err);
  }
}

// ---------------------------------------------------------------------------
// Web style: target.fetch(request, ctx) -> Response.

const waiting = new Set(); // ctx.waitUntil promises that have not settled

function waitUntil(inv, promise) {
  const p = Promise.resolve(promise).then(undefined, (err) => {
    writeLines(inv, 'stderr', 'waitUntil: ' + describe(err) + '\n');
  });
  waiting.add(p);
  inv.waiting++;
  p.then(() => {
    waiting.delete(p);
    if (--inv.waiting === 0 && inv.closedAt !== 0) {
      writeControl('{"type":"waited","id":' + JSON.stringify(inv.id) + ',"from":' + inv.closedAt +
        ',"to":' + Date.now() + '}\n');
    }
  });
}

function onWebClose(inv) {
  inv.closedAt = Date.now();
  if (!inv.res.writableFinished) als.run(inv, abortInvocation, inv);
}

function abortInvocation(inv) {
  inv.ac.abort();
  const reader = inv.reader;
  if (reader !== undefined) reader.cancel().catch(() => {});
}

function toRequest(req, signal) {
  const raw = req.rawHeaders;
  const headers = new Headers();
  let host = '';
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i];
    const v = raw[i + 1];
    if (host === '' && k.length === 4 && k.toLowerCase() === 'host') host = v;
    headers.append(k, v);
  }
  const target = req.url;
  const url = target.charCodeAt(0) === 47 /* / */ ? 'http://' + (host || 'localhost') + target : target;
  const method = req.method;
  const init = { method, headers, signal };
  if (method !== 'GET' && method !== 'HEAD') {
    init.body = Readable.toWeb(req);
    init.duplex = 'half';
  }
  return new Request(url, init);
}

function isResponse(r) {
  if (r instanceof Response) return true;
  // A Response from a bundled fetch polyfill is accepted by its shape.
  return r !== null && typeof r === 'object' && typeof r.status === 'number' &&
    r.headers !== null && typeof r.headers === 'object' && typeof r.headers.forEach === 'function';
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'set-cookie']);

function drained(res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function uncork(res) {
  res.uncork();
}

async function writeBody(inv, reader) {
  const res = inv.res;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (res.destroyed) {
        reader.cancel().catch(() => {});
        return;
      }
      // Corked until the next tick: a chunk and what follows it at once
      // (often the end of the body) leave in one write, while a chunk that
      // is followed by a wait still goes out right away.
      res.cork();
      process.nextTick(uncork, res);
      if (!res.write(value)) await drained(res);
    }
    if (!res.destroyed) res.end();
  } catch (err) {
    writeLines(inv, 'stderr', 'Response body: ' + describe(err) + '\n');
    reader.cancel(err).catch(() => {});
    res.destroy();
  }
}

function sendResponse(inv, r) {
  const res = inv.res;
  if (res.destroyed) {
    // The client went away; let the body's source know.
    if (isResponse(r) && r.body) r.body.cancel().catch(() => {});
    return;
  }
  if (!isResponse(r)) {
    writeLines(inv, 'stderr', 'fetch did not return a Response: ' + describe(r) + '\n');
    respondError(res, 502);
    return;
  }
  try {
    const list = [];
    r.headers.forEach((v, k) => {
      if (!HOP_BY_HOP.has(k)) list.push(k, v);
    });
    if (typeof r.headers.getSetCookie === 'function') {
      for (const c of r.headers.getSetCookie()) list.push('set-cookie', c);
    } else {
      const c = r.headers.get('set-cookie');
      if (c) list.push('set-cookie', c);
    }
    res.writeHead(r.status, r.statusText || undefined, list);
  } catch (err) {
    if (r.body) r.body.cancel().catch(() => {});
    fail(inv, err);
    return;
  }
  const body = r.body;
  const status = r.status;
  if (body === null || body === undefined) {
    res.end();
  } else if (inv.req.method === 'HEAD' || status === 204 || status === 304) {
    body.cancel().catch(() => {});
    res.end();
  } else {
    const reader = body.getReader();
    inv.reader = reader;
    writeBody(inv, reader);
  }
}

function serveWeb(target, inv, req, res) {
  try {
    const ac = new AbortController();
    inv.ac = ac;
    res.once('close', () => onWebClose(inv));
    const request = toRequest(req, ac.signal);
    const ctx = { waitUntil: (p) => waitUntil(inv, p) };
    const ret = target.fetch(request, ctx);
    if (ret !== null && typeof ret === 'object' && typeof ret.then === 'function') {
      ret.then((r) => sendResponse(inv, r), (err) => fail(inv, err));
    } else {
      sendResponse(inv, ret);
    }
  } catch (err) {
    fail(inv, err);
  }
}

// ---------------------------------------------------------------------------
// Startup.

function invocationID(raw) {
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i];
    if (k.length === 10 && (k === 'X-Shoal-Id' || k === 'x-shoal-id' || k.toLowerCase() === 'x-shoal-id')) {
      return raw[i + 1];
    }
  }
  return '';
}

function pickHandler(mod) {
  let h = mod.default;
  for (let depth = 0; depth < 8; depth++) {
    if (h === null || typeof h !== 'object' || typeof h.fetch === 'function' || !('default' in h)) break;
    h = h.default;
  }
  if (h === undefined && typeof mod.fetch === 'function') h = mod;
  if (typeof h === 'function') return { node: h, web: null };
  if (h !== null && typeof h === 'object' && typeof h.fetch === 'function') return { node: null, web: h };
  const what = h === null ? 'null' : typeof h === 'object' ? 'an object without a fetch method' : typeof h;
  throw new Error(
    'the bundle exports ' + what + ' as its default; export a function (req, res) or an object with a fetch(request) method');
}

// syntaxErrorWhere returns node's own report (file:line, the line and a caret)
// for a syntax error in the bundle, which the SyntaxError that import() throws
// does not carry in Node 20. It runs only on this failure path.
function syntaxErrorWhere(err) {
  if (!(err instanceof SyntaxError)) return '';
  try {
    const r = spawnSync(process.execPath, ['--check', bundlePath], { encoding: 'utf8', timeout: 5000 });
    if (r.status === 0 || typeof r.stderr !== 'string') return '';
    return r.stderr.replace(/\n+Node\.js v[^\n]*\n*$/, '').trim();
  } catch {
    return '';
  }
}

if (!socketPath || !bundlePath) {
  fatal('usage: node bootstrap.mjs SOCKET_PATH BUNDLE_PATH');
}

let mod;
try {
  mod = await import(pathToFileURL(path.resolve(bundlePath)).href);
} catch (err) {
  fatal('load ' + bundlePath + ': ' + (syntaxErrorWhere(err) || describe(err)));
}

let picked;
try {
  picked = pickHandler(mod);
} catch (err) {
  fatal(err.message);
}

const { node: nodeHandler, web: webTarget } = picked;

// enter makes inv the AsyncLocalStorage store of everything that follows
// from this request. enterWith sets it on the current async resource, which in
// the request listener is the connection's HTTP parser: so the req events the
// parser emits later ('data', 'end') see it, as does the code the handler
// runs. The socket's handle is a resource of its own, whose callbacks emit
// 'close' on req and res when the client goes away: it gets the store too,
// through the property AsyncLocalStorage itself uses (Node 20 keeps stores
// on resources under als.kResourceStore; where that is missing, those close
// events just run without an invocation). Both stay until the next request on
// the connection replaces them; HTTP/1.1 serves one request at a time per
// connection.
const RESOURCE_STORE = typeof als.kResourceStore === 'symbol' ? als.kResourceStore : undefined;

function enter(inv, req) {
  als.enterWith(inv);
  if (RESOURCE_STORE !== undefined) {
    const handle = req.socket._handle;
    if (handle) handle[RESOURCE_STORE] = inv;
  }
}

const server = http.createServer({
  requestTimeout: 0,
  headersTimeout: 0,
  keepAlive: true,
  maxHeaderSize: 65536,
  requireHostHeader: false,
}, webTarget === null
  ? (req, res) => {
    const inv = new Invocation(invocationID(req.rawHeaders), req, res);
    enter(inv, req);
    serveNode(nodeHandler, inv, req, res);
  }
  : (req, res) => {
    const inv = new Invocation(invocationID(req.rawHeaders), req, res);
    enter(inv, req);
    serveWeb(webTarget, inv, req, res);
  });
server.keepAliveTimeout = 10 * 60 * 1000;
server.timeout = 0;

server.on('error', (err) => fatal('listen ' + socketPath + ': ' + describe(err)));

try {
  if (fs.lstatSync(socketPath).isSocket()) fs.unlinkSync(socketPath);
} catch {
  // nothing there
}

// reportLoad writes the event loop's load every 100 ms; the timer does not
// keep node alive. The delay is the worst of what the 10 ms sampler saw and
// how late this timer itself ran, which a long block always shows.
function reportLoad() {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  let last = performance.eventLoopUtilization();
  let lastAt = performance.now();
  setInterval(() => {
    const at = performance.now();
    const own = Math.max(0, at - lastAt - 100);
    lastAt = at;
    const now = performance.eventLoopUtilization();
    const elu = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    // The histogram holds the sampler's intervals: its lateness is what
    // exceeds the 10 ms resolution.
    const n = delay.count;
    const mean = n > 0 ? Math.max(0, delay.mean / 1e6 - 10) : 0;
    const max = Math.max(n > 0 ? delay.max / 1e6 - 10 : 0, own);
    delay.reset();
    writeControl('{"type":"load","elu":' + elu.toFixed(3) + ',"eld_mean":' + mean.toFixed(2) +
      ',"eld_max":' + max.toFixed(2) + '}\n');
  }, 100).unref();
}

server.listen(socketPath, () => {
  writeControl('{"type":"ready"}\n');
  reportLoad();
});

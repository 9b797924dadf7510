// shoal bootstrap: loads one user bundle into this node process and serves many
// concurrent invocations of it over HTTP/1.1 on a unix socket. Node 20+, node
// built-ins only. Embedded in the shoal binary (internal/runtime/bootstrap).
//
// Contract with the Go supervisor (internal/runtime). Keep it exactly; the Go
// side and bootstrap_test.go depend on it.
//
//   Start:  node BOOTSTRAP_PATH SOCKET_PATH BUNDLE_PATH [OPTIONS_JSON]
//           OPTIONS_JSON: {"helpers":false} turns the Node style helpers off;
//           "maxDurationMs" (default 60000) bounds each invocation's
//           waitUntil work, counted from its start; "commandFd" is the
//           read end of the command pipe (see Loops), none without it;
//           "codeCache" is the path of the V8 code cache of a CommonJS
//           bundle (see Load).
//           With --check in place of SOCKET_PATH the bootstrap loads the
//           bundle, finds its handler, reports its `config` export as
//           {"type":"config","msg":"<JSON>"} if it has one, writes the
//           code cache of a CommonJS bundle to "codeCache" if given, and
//           exits 0; or reports the error.
//           cwd = the deployment folder. fd 3 is a pipe to the runtime (the
//           "control pipe"). stdout and stderr are pipes too; they carry only
//           what bypasses the patched streams below (fs.writeSync(1, ...),
//           loggers that write to fd 1 directly, native code, node's own fatal
//           errors), with no invocation id.
//
//   Load:   a CommonJS bundle (BUNDLE_PATH ends in .cjs) compiled as a
//           vm.Script with the code cache "codeCache" when it exists, and
//           run in node's CommonJS wrapper; else import(BUNDLE_PATH). Either
//           way with http.Server.prototype.listen replaced
//           so that a module calling listen() binds nothing, and
//           globalThis.Response with a subclass (made at its first read:
//           node's fetch is not loaded until the function uses it) that
//           notes the length of a body made from a string or bytes, sent as
//           Content-Length. The
//           handler is found by pickHandler(), in this order:
//             default export, unwrapped while it is an object without a
//             `fetch` method that has a `default` property (CommonJS interop):
//               function               -> Node style: handler(req, res)
//                                         (an Express app is one)
//               object with fetch()    -> Web style: obj.fetch(request, ctx),
//                                         called as a method; returns a
//                                         Response or a promise of one
//               http.Server            -> its 'request' listeners, Node style
//               object with callback() -> callback()'s handler (a Koa app)
//               object with GET, POST... functions -> as named exports below
//             module-level fetch()     -> Web style
//             named exports GET, HEAD, OPTIONS, POST, PUT, DELETE, PATCH
//                                      -> Web style, one function per method;
//                                         HEAD falls back to GET, another
//                                         method gets 405 with Allow
//             a server the module called listen() on -> its listeners
//             anything else        -> control {"type":"error","msg":...}, exit 1
//           A bundle that fails to load (syntax error, missing import, throw at
//           top level) -> control {"type":"error","msg":"load <path>: <stack>"},
//           exit 1. For a syntax error the message is node's own report with
//           file:line and a caret (from `node --check`, run only then).
//
//   Entry:  every response carries x-shoal-entry-ms: how long the call of the
//           handler (or fetch) took before it returned, in ms, one decimal:
//           its synchronous work before its first await (so far, when it
//           writes the headers during the call). The invoker removes it.
//
//   Serve:  an http.Server on the unix socket SOCKET_PATH (a stale socket file
//           there is removed first). requestTimeout and headersTimeout are off
//           (the runtime enforces deadlines), keepAliveTimeout is 10 minutes,
//           no Date header (serve adds it),
//           maxHeaderSize 8 MiB (the gateway enforces the limits, set by
//           serve's flags), no Host header needed. When it listens:
//           control {"type":"ready","codeCache":"none"|"accepted"|"rejected"}
//           (what became of the code cache, see loadCommonJS). A listen
//           error -> control error, exit 1.
//
//   Control pipe (fd 3): newline-delimited JSON, written with fs.writeSync, so
//   in the order things happened, and node blocks while the pipe is full: the
//   runtime must keep reading it. Messages:
//     {"type":"ready","codeCache":"none"|"accepted"|"rejected"}
//     {"type":"error","msg":"..."}
//     {"type":"error","loop":<n>,"msg":"loop <n>: ..."}
//       event loop n (1, 2...) could not start (see Loops).
//     {"type":"log","id":"<invocation id or empty>","stream":"stdout"|"stderr",
//      "msg":"<one line, no trailing newline>","ts":<epoch ms>}
//     {"type":"load","loop":<n>,"inflight":<n>,"elu":<0..1>,"eld_mean":<ms>,"eld_max":<ms>,"next":<ms>}
//       every 100 ms from each event loop once it serves, every second
//       while it idles and at once when an invocation finds it idling: the
//       invocations it serves (their responses not finished), the loop's
//       utilisation over the last interval, how late a 10 ms timer ran
//       (mean and max), and when the next report comes; "woke":true marks
//       the one an invocation that found the loop idling sent, which is of
//       that idle time. A loop blocked by user code sends nothing until it
//       unblocks.
//     {"type":"loop","loop":<n>}
//       event loop n (1, 2...) serves on SOCKET_PATH.n (see Loops).
//     {"type":"waited","id":"<invocation id>","from":<epoch ms>,"to":<epoch ms>}
//       an invocation's waitUntil work outlived its response: from is when
//       the response closed, to when the last of its waitUntil promises
//       settled. Not sent when they all settled before the response closed.
//   If fd 3 is not open or nobody reads it any more (EBADF/EPIPE), the same
//   lines go to stderr instead, so the bootstrap also runs by hand.
//
//   Loops: the main thread's event loop is loop 0 and serves on SOCKET_PATH.
//   The command pipe (newline-delimited JSON, runtime -> node) may ask for
//   more: {"type":"loops","n":N} starts worker threads until there are N
//   loops (at most 16). Loop n runs this same bootstrap with its own copy of
//   the bundle (module state is per loop), serves on SOCKET_PATH.n and says
//   {"type":"loop","loop":n} when it does. Each loop sends its own load
//   and waited messages and log lines. A loop that fails to start sends an
//   error message with its number, node keeps serving on the others and
//   starts no more (nor does the runtime ask for more); a loop that exits once serving (process.exit in user code, a
//   crash) ends the process with its exit code.
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
//     Node style: the handler returned (or its promise resolved) without
//       responding: it may respond later, from a callback, a stream's pipe or
//       an event, as on Vercel. If the invocation ends (maxDuration, the
//       runtime answers 504 FUNCTION_INVOCATION_TIMEOUT) with no response
//       started -> a stderr record saying no response was sent.
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
//   Node style helpers (unless OPTIONS_JSON turns them off), as Vercel's:
//   req and res are instances of ShoalRequest and ShoalResponse. A request
//   with a body is buffered whole before the handler runs, then replayed: the
//   stream still yields all of it, and req.rawBody holds it. req.query,
//   req.cookies and req.body are parsed on first read; req.body by content
//   type (JSON, empty JSON is {}; urlencoded; text/plain; octet-stream as a
//   Buffer; else undefined). Invalid JSON throws an Error "Invalid JSON" with
//   statusCode 400; uncaught, it answers 400 INVALID_JSON_BODY. res.status(),
//   res.send() (content type, length, weak ETag and 304, no body for HEAD,
//   204, 304), res.json(), res.redirect([status,] url) (307 by default).
//
//   waitUntil work still pending at the invocation's maxDuration is given up
//   on: a stderr record says so, and the "waited" message ends there.
//
//   Request context: globalThis[Symbol.for('@vercel/request-context')].get()
//   returns, inside an invocation, { waitUntil, headers, url }, which is what
//   @vercel/functions reads. waitUntil works in both styles, as ctx.waitUntil
//   does in the Web style. Each handler runs in an AsyncResource of its own, so
//   what user code stores with its own AsyncLocalStorage's enterWith() stays
//   in that invocation.
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

import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { parse as parseQueryString } from 'node:querystring';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { format, inspect } from 'node:util';
import { SourceMap, createRequire } from 'node:module';

// child_process, crypto and worker_threads are loaded where first needed:
// each would add milliseconds to every cold start, and most instances never
// use them (a failed import, an ETag, a second event loop).
const require = createRequire(import.meta.url);

// A loop's worker thread gets LOOP_ARG after the main thread's three
// arguments (see startLoop).
const LOOP_ARG = '--shoal-loop';
const isMainThread = process.argv[5] !== LOOP_ARG;
const { parentPort, workerData } = isMainThread ? {} : require('node:worker_threads');

const CONTROL_FD = 3;
const [socketPath, bundlePath, optionsJSON] = process.argv.slice(2);

// This event loop's number: 0 for the main thread, 1... for the loops it
// starts as worker threads when the runtime asks (see Loops).
const loopIndex = isMainThread ? 0 : workerData.loop;

// ---------------------------------------------------------------------------
// Control pipe.

// With --check there is no control pipe (and fd 3 may be one of node's own).
let controlFd = socketPath === '--check' ? 2 : CONTROL_FD;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));
// The event loops of the process share the pipe: a write of more than the
// pipe's atomic size could interleave with another loop's, so each write
// holds this lock (0 free, 1 held), which the main thread hands its loops.
const controlLock = isMainThread ? new Int32Array(new SharedArrayBuffer(4)) : workerData.lock;

// writeControl writes text (whole lines) synchronously. A non-blocking pipe
// that is full (EAGAIN) is retried after a millisecond; a pipe nobody reads
// any more makes the bootstrap fall back to its own stderr.
function writeControl(text) {
  const buf = Buffer.from(text, 'utf8');
  while (Atomics.compareExchange(controlLock, 0, 0, 1) !== 0) Atomics.wait(controlLock, 0, 1, 1);
  try {
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
  } finally {
    Atomics.store(controlLock, 0, 0);
    Atomics.notify(controlLock, 0, 1);
  }
}

// fatal reports msg and exits; in a loop of its own it ends only that loop,
// which the main thread reports (see startLoop).
function fatal(msg) {
  if (isMainThread) writeControl('{"type":"error","msg":' + JSON.stringify(msg) + '}\n');
  else loopFailed(loopIndex, msg);
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
    this.watched = false; // closedAt is kept (a 'close' listener is on res)
    this.startedAt = Date.now(); // epoch ms
    this.expiry = undefined; // timer that gives up on waitUntil at maxDuration
    this.expired = false; // waitUntil work outlived maxDuration
    this.context = undefined; // what @vercel/request-context's get() returns
    this.entryFrom = 0; // performance.now() when the handler was called
    this.entryMs = -1; // how long the handler's call took; -1 while it runs
    this.entrySent = false; // ENTRY_HEADER is among the headers already
  }
}

// The handler's entry: the time its call took, until it returned or its
// promise was made, which is the synchronous work it did before its first
// await. It goes out on the response in ENTRY_HEADER (measured so far when
// the headers are written during the call), and the invoker, which removes
// the header, uses it to keep invocations that hold the event loop apart
// from those that wait on I/O.
// In canonical form, as serve reads names fastest.
const ENTRY_HEADER = 'X-Shoal-Entry-Ms';

function callHandler(inv, fn, thisArg, a, b) {
  inv.entryFrom = performance.now();
  try {
    return fn.call(thisArg, a, b);
  } finally {
    inv.entryMs = performance.now() - inv.entryFrom;
  }
}

function entryMs(inv) {
  return (inv.entryMs >= 0 ? inv.entryMs : performance.now() - inv.entryFrom).toFixed(1);
}

const nativeWriteHead = http.ServerResponse.prototype.writeHead;
http.ServerResponse.prototype.writeHead = function writeHead(...args) {
  const inv = als.getStore();
  if (inv !== undefined && inv.res === this && inv.entryFrom > 0 && !inv.entrySent && !this.headersSent) {
    this.setHeader(ENTRY_HEADER, entryMs(inv));
  }
  return nativeWriteHead.apply(this, args);
};

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
const BAD_JSON = 'INVALID_JSON_BODY';

function started(res) {
  return res.headersSent || res.writableEnded || res.destroyed;
}

const ERROR_HEADERS = {
  500: { 'x-shoal-error': FAILED, 'content-length': '0' },
  502: { 'x-shoal-error': NO_RESPONSE, 'content-length': '0' },
  400: { 'x-shoal-error': BAD_JSON, 'content-length': '0' },
};
// An exception thrown out of an HTTP parser callback (a 'data' listener, say)
// leaves that connection's parser broken: the next request on it would get a
// 400 from node. So the answer to an uncaught exception closes the connection.
const UNCAUGHT_HEADERS = {
  500: { ...ERROR_HEADERS[500], 'connection': 'close' },
  400: { ...ERROR_HEADERS[400], 'connection': 'close' },
};

// errorStatus is the status of the answer to an error that ended an
// invocation: 400 for the helpers' invalid JSON, 500 for anything else.
function errorStatus(err) {
  return err !== null && typeof err === 'object' && err[INVALID_JSON] === true ? 400 : 500;
}

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
  if (!started(res)) respondError(res, errorStatus(err));
  else if (!res.writableEnded) res.destroy();
}

process.on('unhandledRejection', (reason) => {
  writeLines(als.getStore(), 'stderr', 'Unhandled Rejection: ' + describe(reason) + '\n');
});

process.on('uncaughtException', (err) => {
  const inv = als.getStore();
  writeLines(inv, 'stderr', 'Uncaught Exception: ' + describe(err) + '\n');
  if (inv instanceof Invocation && !started(inv.res)) {
    const status = errorStatus(err);
    respondError(inv.res, status, UNCAUGHT_HEADERS[status]);
  }
});

// ---------------------------------------------------------------------------
// Node style helpers, as Vercel's: req.query, req.cookies, req.body,
// res.status(), res.send(), res.json(), res.redirect(). They live on the
// prototypes of the server's own request and response classes, so a
// framework that swaps the prototype (Express) gets its own methods.

const CHUNKS = Symbol('shoal.chunks'); // body chunks while buffering
const BUFFERED = Symbol('shoal.buffered'); // called once the body is in
const INVALID_JSON = Symbol('shoal.invalidJSON');

// ShoalRequest buffers a request body before the handler runs, so that
// req.body can be parsed synchronously, and then replays it: the stream
// still yields the whole body to whoever reads it ('data', pipe,
// Readable.toWeb), and req.rawBody holds it as one Buffer.
class ShoalRequest extends http.IncomingMessage {
  push(chunk, encoding) {
    const chunks = this[CHUNKS];
    if (chunks === undefined) return super.push(chunk, encoding);
    if (chunk !== null) {
      chunks.push(chunk);
      return true;
    }
    const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    this[CHUNKS] = undefined;
    this.rawBody = body;
    if (body.length > 0) super.push(body);
    super.push(null);
    process.nextTick(this[BUFFERED]);
    return true;
  }
}

// hasBody reports whether a request carries a body.
function hasBody(req) {
  const h = req.headers;
  return h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0');
}

// bufferBody calls then once req's body has arrived whole.
function bufferBody(req, then) {
  req.rawBody = undefined;
  if (!hasBody(req)) {
    then();
    return;
  }
  req[CHUNKS] = [];
  req[BUFFERED] = then;
}

// lazy defines a property that get computes on first read (and caches
// unless it throws); assigning to it replaces it, as frameworks do.
function lazy(name, get) {
  return {
    configurable: true,
    enumerable: true,
    get() {
      const value = get(this);
      Object.defineProperty(this, name, { value, writable: true, configurable: true, enumerable: true });
      return value;
    },
    set(value) {
      Object.defineProperty(this, name, { value, writable: true, configurable: true, enumerable: true });
    },
  };
}

function parseQuery(url) {
  const q = url.indexOf('?');
  return { ...parseQueryString(q === -1 ? '' : url.slice(q + 1)) };
}

// parseCookies parses a Cookie header: the first of a repeated name wins,
// values are percent-decoded where they can be and lose their quotes.
function parseCookies(header) {
  const out = {};
  if (typeof header !== 'string') return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    const name = part.slice(0, eq).trim();
    if (name === '' || Object.hasOwn(out, name)) continue;
    let value = part.slice(eq + 1).trim();
    if (value.length >= 2 && value.charCodeAt(0) === 34 && value.charCodeAt(value.length - 1) === 34) {
      value = value.slice(1, -1);
    }
    try {
      value = decodeURIComponent(value);
    } catch {
      // kept as sent
    }
    out[name] = value;
  }
  return out;
}

function mediaType(req) {
  const ct = req.headers['content-type'];
  if (typeof ct !== 'string') return '';
  const semi = ct.indexOf(';');
  return (semi === -1 ? ct : ct.slice(0, semi)).trim().toLowerCase();
}

function invalidJSON(cause) {
  const err = new Error('Invalid JSON', { cause });
  err.statusCode = 400;
  err[INVALID_JSON] = true;
  return err;
}

// parseBody parses the buffered body by its content type, as Vercel does:
// JSON (empty is {}), urlencoded, text, octet-stream; anything else, or no
// content type, is undefined. Invalid JSON throws a 400 "Invalid JSON".
function parseBody(req) {
  const type = mediaType(req);
  const raw = req.rawBody ?? Buffer.alloc(0);
  switch (type) {
    case 'application/json': {
      const text = raw.toString('utf8');
      if (text.trim() === '') return {};
      try {
        return JSON.parse(text);
      } catch (err) {
        throw invalidJSON(err);
      }
    }
    case 'application/x-www-form-urlencoded':
      return { ...parseQueryString(raw.toString('utf8')) };
    case 'text/plain':
      return raw.toString('utf8');
    case 'application/octet-stream':
      return raw;
    default:
      return undefined;
  }
}

Object.defineProperties(ShoalRequest.prototype, {
  query: lazy('query', (req) => parseQuery(req.url)),
  cookies: lazy('cookies', (req) => parseCookies(req.headers.cookie)),
  body: lazy('body', parseBody), // invalid JSON throws again on every read
});

// etag is a weak validator of a body: its length and a SHA-1 prefix.
function etag(buf) {
  const hash = require('node:crypto').createHash('sha1').update(buf).digest('base64').slice(0, 27);
  return 'W/"' + buf.length.toString(16) + '-' + hash + '"';
}

// fresh reports whether the client's If-None-Match already names tag.
function fresh(req, tag) {
  const inm = req.headers['if-none-match'];
  if (typeof inm !== 'string') return false;
  if (inm.trim() === '*') return true;
  const bare = tag.replace(/^W\//, '');
  return inm.split(',').some((t) => t.trim().replace(/^W\//, '') === bare);
}

class ShoalResponse extends http.ServerResponse {
  status(code) {
    this.statusCode = code;
    return this;
  }

  // send writes body and ends the response: a string as text/html, a Buffer
  // as application/octet-stream (unless a content type is set), anything
  // else as JSON. It sets content-length and an ETag, answers 304 when the
  // client's copy is fresh, and writes no body for HEAD, 204 and 304.
  send(body) {
    if (body === null || body === undefined) body = '';
    else if (typeof body === 'object' && !Buffer.isBuffer(body) && !(body instanceof Uint8Array)) return this.json(body);
    else if (typeof body === 'number' || typeof body === 'boolean') return this.json(body);
    let buf;
    if (typeof body === 'string') {
      const type = this.getHeader('content-type');
      if (type === undefined) this.setHeader('content-type', 'text/html; charset=utf-8');
      else if (typeof type === 'string' && !/;\s*charset=/i.test(type)) this.setHeader('content-type', type + '; charset=utf-8');
      buf = Buffer.from(body, 'utf8');
    } else {
      if (this.getHeader('content-type') === undefined) this.setHeader('content-type', 'application/octet-stream');
      buf = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    }
    const req = this.req;
    const method = req.method;
    if (this.getHeader('etag') === undefined && this.statusCode >= 200 && this.statusCode < 300) {
      const tag = etag(buf);
      this.setHeader('etag', tag);
      if ((method === 'GET' || method === 'HEAD') && fresh(req, tag)) this.statusCode = 304;
    }
    if (this.statusCode === 204 || this.statusCode === 304) {
      this.removeHeader('content-type');
      this.removeHeader('content-length');
      this.removeHeader('transfer-encoding');
      this.end();
      return this;
    }
    this.setHeader('content-length', buf.length);
    if (method === 'HEAD') this.end();
    else this.end(buf);
    return this;
  }

  json(value) {
    if (this.getHeader('content-type') === undefined) this.setHeader('content-type', 'application/json; charset=utf-8');
    return this.send(JSON.stringify(value) ?? '');
  }

  // redirect(url) answers 307; redirect(status, url) answers status.
  redirect(statusOrURL, url) {
    let status = 307;
    if (typeof statusOrURL === 'number') status = statusOrURL;
    else url = statusOrURL;
    if (typeof url !== 'string') throw new TypeError('res.redirect: the URL must be a string');
    this.writeHead(status, { location: url }).end();
    return this;
  }
}

// ---------------------------------------------------------------------------
// Node style: handler(req, res).

// afterNodeHandler runs once the handler returned, or its promise
// resolved: a response not started yet may still come, and if the
// invocation ends first, the logs say why there was none.
function afterNodeHandler(inv) {
  if (!started(inv.res)) inv.res.once('close', () => noResponse(inv));
}

function noResponse(inv) {
  if (!inv.res.headersSent) {
    writeLines(inv, 'stderr', 'No response was sent: the handler returned and nothing responded before the invocation ended\n');
  }
}

function serveNode(handler, inv, req, res) {
  try {
    const ret = callHandler(inv, handler, undefined, req, res);
    if (ret !== null && (typeof ret === 'object' || typeof ret === 'function') &&
        typeof ret.then === 'function') {
      ret.then(() => afterNodeHandler(inv), (err) => fail(inv, err));
    } else {
      afterNodeHandler(inv);
    }
  } catch (err) {
    fail(inv, err);
  }
}

// ---------------------------------------------------------------------------
// Web style: target.fetch(request, ctx) -> Response.

const waiting = new Set(); // waitUntil promises that have not settled

function closed(inv) {
  inv.closedAt = Date.now();
}

// waitUntil keeps promise referenced until it settles, logs a rejection and,
// when it outlives the response, tells the runtime (a "waited" message).
function waitUntil(inv, promise) {
  if (!inv.watched) {
    // Node style: the response's close is watched from the first waitUntil.
    inv.watched = true;
    if (inv.res.closed) closed(inv);
    else inv.res.once('close', () => closed(inv));
  }
  const p = Promise.resolve(promise).then(undefined, (err) => {
    writeLines(inv, 'stderr', 'waitUntil: ' + describe(err) + '\n');
  });
  waiting.add(p);
  if (inv.waiting++ === 0 && !inv.expired) {
    inv.expiry = setTimeout(expire, Math.max(0, inv.startedAt + maxDurationMs - Date.now()), inv);
    inv.expiry.unref();
  }
  p.then(() => {
    waiting.delete(p);
    if (--inv.waiting === 0 && !inv.expired) {
      clearTimeout(inv.expiry);
      inv.expiry = undefined;
      if (inv.closedAt !== 0) sendWaited(inv, Date.now());
    }
  });
}

function sendWaited(inv, to) {
  writeControl('{"type":"waited","id":' + JSON.stringify(inv.id) + ',"from":' + inv.closedAt +
    ',"to":' + to + '}\n');
}

// expire gives up on an invocation's waitUntil work at its maxDuration: the
// work may run on, but it no longer counts in the invocation.
function expire(inv) {
  inv.expiry = undefined;
  if (inv.waiting === 0) return;
  inv.expired = true;
  writeLines(inv, 'stderr', 'waitUntil: ' + inv.waiting + ' promise(s) still pending at maxDuration (' +
    maxDurationMs / 1000 + ' s); no longer waited for\n');
  if (inv.closedAt !== 0) sendWaited(inv, Date.now());
}

// The request context that @vercel/functions reads: its waitUntil() and
// getContext() work unchanged, in both handler shapes.
globalThis[Symbol.for('@vercel/request-context')] = {
  get() {
    const inv = als.getStore();
    if (!(inv instanceof Invocation)) return undefined;
    if (inv.context === undefined) {
      const req = inv.req;
      inv.context = {
        waitUntil: (p) => waitUntil(inv, typeof p === 'function' ? p() : p),
        headers: { ...req.headers },
        url: req.url,
      };
    }
    return inv.context;
  },
};

function onWebClose(inv) {
  closed(inv);
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
  webResponse();
  if (r instanceof NativeResponse) return true;
  // A Response from a bundled fetch polyfill is accepted by its shape.
  return r !== null && typeof r === 'object' && typeof r.status === 'number' &&
    r.headers !== null && typeof r.headers === 'object' && typeof r.headers.forEach === 'function';
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'set-cookie']);

// A Response made from a string or bytes is whole from the start: it goes
// out with a Content-Length, as Vercel sends it, so the platform's limit on
// buffered responses applies to it while a streamed body stays unbounded.
// globalThis.Response is replaced, before the bundle loads, by a subclass
// that notes the body's length (Response.json too); everything else about
// it is node's own. Node's Response (undici, with fetch) takes ~30 ms to
// load, which a handler that never uses it should not wait for at every
// cold start: the subclass is made at the first read of
// globalThis.Response.
const BODY_LENGTH = Symbol('shoal.bodyLength');

function bodyLength(body) {
  if (typeof body === 'string') return Buffer.byteLength(body);
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return body.byteLength;
  if (body instanceof Blob) return body.size;
  return undefined;
}

const nativeResponseProperty = Object.getOwnPropertyDescriptor(globalThis, 'Response');
let NativeResponse; // node's Response, once loaded
let ShoalWebResponse; // the subclass, once made

// webResponse returns the subclass, made (and node's Response loaded) the
// first time; globalThis.Response is the subclass from then on, unless the
// function set a Response of its own.
function webResponse() {
  if (ShoalWebResponse !== undefined) return ShoalWebResponse;
  const current = Object.getOwnPropertyDescriptor(globalThis, 'Response');
  // node's own lazy getter redefines the property with its value.
  NativeResponse = nativeResponseProperty.get ? nativeResponseProperty.get.call(globalThis) : nativeResponseProperty.value;
  ShoalWebResponse = class Response extends NativeResponse {
    constructor(body, init) {
      super(body, init);
      const n = bodyLength(body);
      if (n !== undefined) Object.defineProperty(this, BODY_LENGTH, { value: n });
    }

    static json(data, init) {
      const r = new ShoalWebResponse(JSON.stringify(data), init);
      if (!r.headers.has('content-type')) r.headers.set('content-type', 'application/json');
      return r;
    }
  };
  if (current === undefined) delete globalThis.Response;
  else if (current.get === webResponse) setGlobalResponse(ShoalWebResponse);
  else Object.defineProperty(globalThis, 'Response', current); // the function's own
  return ShoalWebResponse;
}

function setGlobalResponse(value) {
  Object.defineProperty(globalThis, 'Response', {
    value, writable: true, configurable: true, enumerable: nativeResponseProperty.enumerable,
  });
}

Object.defineProperty(globalThis, 'Response', {
  get: webResponse, set: setGlobalResponse, configurable: true, enumerable: nativeResponseProperty.enumerable,
});

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
    let hasLength = false;
    r.headers.forEach((v, k) => {
      if (HOP_BY_HOP.has(k)) return;
      list.push(k, v);
      if (k === 'content-length') hasLength = true;
    });
    if (typeof r.headers.getSetCookie === 'function') {
      for (const c of r.headers.getSetCookie()) list.push('set-cookie', c);
    } else {
      const c = r.headers.get('set-cookie');
      if (c) list.push('set-cookie', c);
    }
    const n = r[BODY_LENGTH];
    if (n !== undefined && !hasLength && !r.bodyUsed && r.status !== 204 && r.status !== 304) {
      list.push('content-length', String(n));
    }
    list.push(ENTRY_HEADER, entryMs(inv));
    inv.entrySent = true;
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
    inv.watched = true;
    res.once('close', () => onWebClose(inv));
    const request = toRequest(req, ac.signal);
    const ctx = { waitUntil: (p) => waitUntil(inv, p) };
    const ret = callHandler(inv, target.fetch, target, request, ctx);
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

// The seven methods a module may export handlers for, web style.
const METHODS = ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'DELETE', 'PATCH'];

function exportsMethods(obj) {
  return obj !== null && typeof obj === 'object' && METHODS.some((m) => typeof obj[m] === 'function');
}

// methodTarget serves a module's named method exports as one web target:
// HEAD falls back to GET, and a method without an export gets 405 with an
// Allow header.
function methodTarget(obj) {
  const table = new Map();
  for (const m of METHODS) if (typeof obj[m] === 'function') table.set(m, obj[m]);
  if (!table.has('HEAD') && table.has('GET')) table.set('HEAD', table.get('GET'));
  const allow = METHODS.filter((m) => table.has(m)).join(', ');
  return {
    fetch(request, ctx) {
      const f = table.get(request.method);
      if (f === undefined) return new Response(null, { status: 405, headers: { allow } });
      return f(request, ctx);
    },
  };
}

// A server the module started itself: listen() is intercepted, so that
// nothing binds a port, and the server's 'request' listeners serve.
const serverListen = http.Server.prototype.listen;
let listened;

http.Server.prototype.listen = function listen(...args) {
  if (listened === undefined) listened = this;
  const port = typeof args[0] === 'number' ? args[0] : Number(args[0]?.port ?? 0) || 3000;
  this.address = () => ({ address: '127.0.0.1', family: 'IPv4', port });
  const cb = args.findLast((a) => typeof a === 'function');
  if (cb !== undefined) this.once('listening', cb);
  process.nextTick(() => this.emit('listening'));
  return this;
};

function serverHandler(srv) {
  return (req, res) => srv.emit('request', req, res);
}

// pickHandler finds what serves requests in the bundle's exports, in this
// order: the default export (unwrapped while it is an object without fetch
// that has a default) when it is a function (handler(req, res), an Express
// app), an object with fetch(), an http.Server, an object with callback()
// (a Koa app) or one with method exports; then a module-level fetch, the
// module's method exports, and last a server the module called listen() on.
function pickHandler(mod) {
  let h = mod.default;
  for (let depth = 0; depth < 8; depth++) {
    if (h === null || typeof h !== 'object' || typeof h.fetch === 'function' || !('default' in h)) break;
    h = h.default;
  }
  if (typeof h === 'function') return { node: h, web: null };
  if (h !== null && typeof h === 'object') {
    if (typeof h.fetch === 'function') return { node: null, web: h };
    if (h instanceof http.Server) return { node: serverHandler(h), web: null };
    if (typeof h.callback === 'function') return { node: h.callback(), web: null };
    if (exportsMethods(h)) return { node: null, web: methodTarget(h) };
  }
  if (typeof mod.fetch === 'function') return { node: null, web: mod };
  if (exportsMethods(mod)) return { node: null, web: methodTarget(mod) };
  if (listened !== undefined) return { node: serverHandler(listened), web: null };
  const what = h === undefined ? 'has no default export' : h === null ? 'exports null as its default' :
    typeof h === 'object' ? 'exports an object without a fetch method as its default' : 'exports a ' + typeof h + ' as its default';
  throw new Error('the bundle ' + what + '; export a function (req, res), an object with a fetch(request) ' +
    'method, an http.Server or app, or named method handlers (' + METHODS.join(', ') + ')');
}

// syntaxErrorWhere returns node's own report (file:line, the line and a caret)
// for a syntax error in the bundle, which the SyntaxError that import() throws
// does not carry in Node 20. It runs only on this failure path.
function syntaxErrorWhere(err) {
  if (!(err instanceof SyntaxError)) return '';
  try {
    const r = require('node:child_process').spawnSync(process.execPath, ['--check', bundlePath], { encoding: 'utf8', timeout: 5000 });
    if (r.status === 0 || typeof r.stderr !== 'string') return '';
    return r.stderr.replace(/\n+Node\.js v[^\n]*\n*$/, '').trim();
  } catch {
    return '';
  }
}

if (!socketPath || !bundlePath) {
  fatal('usage: node bootstrap.mjs SOCKET_PATH BUNDLE_PATH [OPTIONS_JSON]');
}

// Options: {"helpers": false} serves Node style handlers without the helpers
// (plain http.IncomingMessage and ServerResponse, bodies not buffered).
let options = {};
try {
  if (optionsJSON) options = JSON.parse(optionsJSON);
} catch (err) {
  fatal('options ' + JSON.stringify(optionsJSON) + ': ' + err.message);
}
const helpers = options.helpers !== false;
const maxDurationMs = Number(options.maxDurationMs) > 0 ? Number(options.maxDurationMs) : 60000;

// ---------------------------------------------------------------------------
// Stack traces.
//
// A stack names the function's own files and lines, from the bundle's
// source map, as node --enable-source-maps would; but the map is read and
// parsed when a stack first needs it, not at every cold start (node's flag
// parses it as the bundle loads: 24 ms for an Express app).

const bundleFile = path.resolve(bundlePath);
const bundleURL = pathToFileURL(bundleFile).href;
let bundleMap; // the bundle's SourceMap; null: none or unreadable

function bundleSourceMap() {
  if (bundleMap !== undefined) return bundleMap;
  bundleMap = null;
  try {
    const payload = JSON.parse(fs.readFileSync(bundleFile + '.map', 'utf8'));
    const root = path.resolve(path.dirname(bundleFile), payload.sourceRoot || '');
    payload.sources = payload.sources.map((src) =>
      src.startsWith('file://') ? fileURLToPath(src) : path.resolve(root, src));
    bundleMap = new SourceMap(payload);
  } catch {
    // No map: stacks name the bundle.
  }
  return bundleMap;
}

// frame is V8's text for a call site, with a place in the bundle replaced
// by the place in the source it came from.
function frame(site) {
  const text = String(site);
  const file = site.getFileName();
  if (file !== bundleURL && file !== bundleFile) return text;
  const line = site.getLineNumber();
  const column = site.getColumnNumber();
  const map = bundleSourceMap();
  const entry = map && line !== null && column !== null ? map.findEntry(line - 1, column - 1) : undefined;
  if (!entry || !entry.originalSource) return text;
  return text.replace(file + ':' + line + ':' + column,
    entry.originalSource + ':' + (entry.originalLine + 1) + ':' + (entry.originalColumn + 1));
}

Error.prepareStackTrace = function prepareStackTrace(err, sites) {
  let head;
  try {
    head = Error.prototype.toString.call(err);
  } catch {
    head = '<error>';
  }
  return sites.length === 0 ? head : head + '\n    at ' + sites.map(frame).join('\n    at ');
};

// A CommonJS bundle (.cjs) is compiled as a vm.Script, with the V8 code
// cache the deploy made for it (options.codeCache, the file's path): V8
// then skips parsing and compiling what the cache holds, which for an
// Express app is most of its load. Node 20 has no such cache for an ES
// module, which is imported as it is. codeCache says what became of the
// cache: "none" (no file), "accepted" or "rejected" (V8 refused it: node
// or its flags are not those the deploy made it with).
let bundleScript;
let codeCache = 'none';
function loadCommonJS() {
  const vm = require('node:vm');
  const source = fs.readFileSync(bundleFile, 'utf8');
  let cachedData;
  if (typeof options.codeCache === 'string' && socketPath !== '--check') {
    try {
      cachedData = fs.readFileSync(options.codeCache);
    } catch {
      // none made, or unreadable: compile
    }
  }
  // node's CommonJS wrapper, with import.meta's values as a sixth
  // argument, on a line of its own so the bundle's lines keep their
  // numbers; strict, as the ES module bundle was.
  bundleScript = new vm.Script(
    '(function (exports, require, module, __filename, __dirname, __shoalImportMeta) {"use strict";\n' + source + '\n})', {
      filename: bundleFile,
      lineOffset: -1,
      cachedData,
      // No import() callback: the build leaves no import() in a CommonJS
      // bundle, as node 20 loses the callback of a script from a cache.
    });
  if (cachedData) codeCache = bundleScript.cachedDataRejected ? 'rejected' : 'accepted';
  const dirname = path.dirname(bundleFile);
  const module = { exports: {}, id: '.', filename: bundleFile, loaded: false, children: [], paths: [] };
  bundleScript.runInThisContext()(module.exports, createRequire(bundleFile), module, bundleFile, dirname,
    { url: bundleURL, dirname, filename: bundleFile });
  module.loaded = true;
  // The module namespace import() would give: an ES module's exports
  // (esbuild marks them __esModule), else module.exports as the default.
  const exp = module.exports;
  return exp !== null && typeof exp === 'object' && exp.__esModule ? exp : { default: exp };
}

let mod;
try {
  mod = bundleFile.endsWith('.cjs') ? loadCommonJS() : await import(bundleURL);
} catch (err) {
  fatal('load ' + bundlePath + ': ' + (syntaxErrorWhere(err) || describe(err)));
}

let picked;
try {
  picked = pickHandler(mod);
} catch (err) {
  fatal(err.message);
}

// --check: the bundle loads and exports a handler; nothing is served. Its
// `config` export (Vercel's `export const config`, or module.exports.config
// for CommonJS) is reported for the deploy to read.
if (socketPath === '--check') {
  const d = mod.default;
  const config = mod.config !== undefined ? mod.config :
    (typeof d === 'function' || (d !== null && typeof d === 'object')) ? d.config : undefined;
  if (config !== undefined) {
    let json;
    try {
      json = JSON.stringify(config);
    } catch (err) {
      fatal('export const config: ' + err.message);
    }
    writeControl('{"type":"config","msg":' + JSON.stringify(json ?? 'null') + '}\n');
  }
  // The code cache, made once the bundle has loaded, holds what its load
  // compiled as well as what V8 compiles eagerly.
  if (bundleScript !== undefined && typeof options.codeCache === 'string') {
    try {
      fs.writeFileSync(options.codeCache, bundleScript.createCachedData());
    } catch {
      // The bundle can serve without: instances compile it (the deploy
      // logs that no cache was made).
    }
  }
  process.exit(0);
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

function enter(inv, req, res) {
  als.enterWith(inv);
  loadSeen = true;
  if (delaySampler !== null && !delaySampling) {
    delaySampler.enable();
    delaySampling = true;
  }
  if (reportNext === IDLE_REPORT_EVERY) reportNow(true);
  // serve's front dates every response that has no Date of its own: one
  // header fewer to write here and to parse there.
  res.sendDate = false;
  if (RESOURCE_STORE !== undefined) {
    const handle = req.socket._handle;
    if (handle) handle[RESOURCE_STORE] = inv;
  }
}

// serveInScope runs the handler in an async scope of its own, so that what
// user code keeps in its own AsyncLocalStorage with enterWith() stays with
// this invocation: it would otherwise stick to the connection's parser and
// show in the next request on the connection.
function serveNodeInScope(inv, req, res) {
  new AsyncResource('shoal.invocation').runInAsyncScope(serveNode, null, nodeHandler, inv, req, res);
}

const invoke = webTarget !== null
  ? (req, res) => {
    const inv = new Invocation(invocationID(req.rawHeaders), req, res);
    enter(inv, req, res);
    new AsyncResource('shoal.invocation').runInAsyncScope(serveWeb, null, webTarget, inv, req, res);
  }
  : helpers
    ? (req, res) => {
      const inv = new Invocation(invocationID(req.rawHeaders), req, res);
      enter(inv, req, res);
      bufferBody(req, () => serveNodeInScope(inv, req, res));
    }
    : (req, res) => {
      const inv = new Invocation(invocationID(req.rawHeaders), req, res);
      enter(inv, req, res);
      serveNodeInScope(inv, req, res);
    };

const server = http.createServer({
  requestTimeout: 0,
  headersTimeout: 0,
  keepAlive: true,
  // The gateway bounds request headers with serve's flags; node's own
  // bound must only stay above any of them.
  maxHeaderSize: 8 << 20,
  requireHostHeader: false,
  ...(helpers && webTarget === null ? { IncomingMessage: ShoalRequest, ServerResponse: ShoalResponse } : {}),
}, (req, res) => {
  if (req.url === LANE_URL) {
    const token = laneToken(req.rawHeaders);
    if (token !== '') {
      openLane(token, res);
      return;
    }
  }
  invoke(req, res);
});
server.keepAliveTimeout = 10 * 60 * 1000;
server.timeout = 0;

// Lanes: serve carries its connections to this loop over pairs of FIFOs,
// which cost the kernel less per message than the loop's socket (nodelink's
// lane.go and BenchmarkTransport). It makes them beside the socket,
// LISTEN_PATH.lane-TOKEN.in (requests) and .out (responses), and asks for
// the lane with a request to LANE_URL carrying x-shoal-lane: TOKEN, a
// header the gateway removes from clients' requests. The loop's server
// then reads and writes the lane as one more connection.
const LANE_URL = '/.shoal-lane';

// laneToken is the x-shoal-lane header's token, or '' when there is none
// or it is not one serve makes.
function laneToken(raw) {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 12 && raw[i].toLowerCase() === 'x-shoal-lane') {
      return /^[0-9a-z]{1,40}$/.test(raw[i + 1]) ? raw[i + 1] : '';
    }
  }
  return '';
}

// openLane opens the lane of token and answers res: 200 once the server
// has it, 500 if the FIFOs would not open (serve then keeps the socket).
function openLane(token, res) {
  const base = listenPath + '.lane-' + token;
  let rfd = -1;
  let wfd = -1;
  try {
    rfd = fs.openSync(base + '.in', fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    wfd = fs.openSync(base + '.out', fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    if (rfd >= 0) fs.closeSync(rfd);
    res.statusCode = 500;
    res.end(describe(err));
    return;
  }
  server.emit('connection', laneSocket(rfd, wfd));
  res.end();
}

// laneSocket makes a lane's two FIFOs one connection for the server: the
// requests FIFO's socket, which the server reads from its handle in C++ as
// it does a unix socket's, with its writes sent to the responses FIFO's
// handle (the socket's own is read-only). Through a JS Duplex of the two
// instead, node spent half as much again per request under load.
function laneSocket(rfd, wfd) {
  const wr = new net.Socket({ fd: wfd, readable: false, writable: true });
  const lane = new net.Socket({ fd: rfd, readable: true, writable: true });
  lane._writeGeneric = function writeGeneric(writev, data, encoding, callback) {
    return writev ? wr._writev(data, callback) : wr._write(data, encoding, callback);
  };
  lane._final = function final(callback) {
    wr.end();
    callback();
  };
  wr.on('error', (err) => lane.destroy(err));
  lane.once('close', () => wr.destroy());
  return lane;
}

// Each event loop listens on a socket of its own: SOCKET_PATH for the main
// thread's, SOCKET_PATH.N for loop N's.
const listenPath = isMainThread ? socketPath : socketPath + '.' + loopIndex;

server.on('error', (err) => fatal('listen ' + listenPath + ': ' + describe(err)));

try {
  if (fs.lstatSync(listenPath).isSocket()) fs.unlinkSync(listenPath);
} catch {
  // nothing there
}

// The server's connections: each carries one invocation at a time, whose
// response is the socket's _httpMessage until it finishes.
const connections = new Set();
server.on('connection', (socket) => {
  connections.add(socket);
  socket.once('close', () => connections.delete(socket));
});

// inFlight counts the invocations whose responses have not finished.
function inFlight() {
  let n = 0;
  for (const socket of connections) if (socket._httpMessage) n++;
  return n;
}

// The loop's delay sampler, a 10 ms timer, and whether it runs: it stops
// while the loop idles (an interval with nothing in flight, no invocation
// begun and the loop all but unused), and starts again with the next
// invocation. loadSeen says an invocation began since the last report.
let delaySampler = null;
let delaySampling = false;
let loadSeen = false;

// idleUtilization is the loop's utilisation under which an interval with
// nothing in flight counts as idle. The sampler's own 100 wakeups a second
// come to 1-6% of the loop on a slow or busy host, so a lower bound could
// keep the sampler running for itself.
const idleUtilization = 0.05;

// REPORT_EVERY and IDLE_REPORT_EVERY are how often the loop reports its
// load, in ms: while it works, and while it idles. An idle instance waiting
// for work so wakes node once a second, not 10 or 110 times, and the
// runtime with it. Each report says when the next comes, so that the
// runtime knows how late one is (a loop held by code).
const REPORT_EVERY = 100;
const IDLE_REPORT_EVERY = 1000;

// reportNext is when the next report comes, after the last one; reportNow
// writes one at once, which enter does for an invocation that finds the
// loop idling, so that the runtime hears at once that it works.
let reportNext = REPORT_EVERY;
let reportNow = null;

// reportLoad writes the event loop's load every REPORT_EVERY ms, or
// IDLE_REPORT_EVERY while it idles; the timer does not keep node alive.
// The delay is the worst of what the 10 ms sampler saw and how late this
// timer itself ran, which a long block always shows.
function reportLoad() {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  delaySampler = delay;
  delaySampling = true;
  let last = performance.eventLoopUtilization();
  let lastAt = performance.now();
  let timer = null;
  // woke: an invocation that found the loop idling asks, and the report
  // (of the idle time) says so.
  reportNow = (woke) => {
    clearTimeout(timer);
    const at = performance.now();
    const own = Math.max(0, at - lastAt - reportNext);
    lastAt = at;
    const now = performance.eventLoopUtilization();
    const elu = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    // The histogram holds the sampler's intervals: its lateness is what
    // exceeds the 10 ms resolution. A sampler started by an invocation that
    // found the loop idling has none yet when that invocation held the loop
    // (its first tick only starts it): then this timer's own lateness is
    // the one measure of the wait.
    const n = delay.count;
    const mean = n > 0 ? Math.max(0, delay.mean / 1e6 - 10) : own;
    const max = Math.max(n > 0 ? delay.max / 1e6 - 10 : 0, own);
    delay.reset();
    const inflight = inFlight();
    const idle = inflight === 0 && !loadSeen && elu < idleUtilization;
    reportNext = idle ? IDLE_REPORT_EVERY : REPORT_EVERY;
    writeControl('{"type":"load","loop":' + loopIndex + ',"inflight":' + inflight + ',"elu":' + elu.toFixed(3) + ',"eld_mean":' +
      mean.toFixed(2) + ',"eld_max":' + max.toFixed(2) + ',"next":' + reportNext + (woke === true ? ',"woke":true}\n' : '}\n'));
    if (idle && delaySampling) {
      delay.disable();
      delaySampling = false;
    } else if (!idle && !delaySampling) {
      // Work that is no invocation's (a timer, waitUntil) turns it on again.
      delay.enable();
      delaySampling = true;
    }
    loadSeen = false;
    timer = setTimeout(reportNow, reportNext, false).unref();
  };
  timer = setTimeout(reportNow, REPORT_EVERY).unref();
}

// ---------------------------------------------------------------------------
// Loops: more event loops in this process, as worker threads, each running
// this module with its own copy of the bundle and its own socket. The
// runtime asks for them on the command pipe when invocations that hold the
// loop queue behind each other: a second loop computes on another core
// while the first one does, in the same instance. Module state is per loop.

// MAX_LOOPS bounds the loops of one process, whatever is asked.
const MAX_LOOPS = 16;
let loops = 1; // started or starting, the main thread's included
let loopsFailed = false; // a loop could not start: start no more

// startLoop starts loop n. Once it serves, its exit is the process's: the
// user's code ended it (process.exit) or it crashed, as the main thread's
// would end the instance. A loop that fails before it serves reported why
// itself (fatal) or is reported here, and no other loop is started.
function startLoop(n) {
  let serving = false;
  const { Worker } = require('node:worker_threads');
  const w = new Worker(new URL(import.meta.url), {
    argv: [socketPath, bundlePath, optionsJSON ?? '{}', LOOP_ARG],
    workerData: { loop: n, lock: controlLock },
  });
  w.on('message', (m) => {
    if (m === 'serving') serving = true;
  });
  w.on('error', (err) => loopFailed(n, describe(err)));
  w.on('exit', (code) => {
    if (serving) process.exit(code);
    loopsFailed = true;
  });
}

// loopFailed reports that loop n could not start, and why.
function loopFailed(n, msg) {
  writeControl('{"type":"error","loop":' + n + ',"msg":' + JSON.stringify('loop ' + n + ': ' + msg) + '}\n');
}

// setLoops starts loops until there are n.
function setLoops(n) {
  n = Math.min(Math.max(1, Math.trunc(Number(n)) || 1), MAX_LOOPS);
  while (!loopsFailed && loops < n) startLoop(loops++);
}

// readCommands reads the command pipe: newline-delimited JSON from the
// runtime. {"type":"loops","n":N} asks for N event loops in all.
function readCommands(fd) {
  const pipe = new net.Socket({ fd, readable: true, writable: false });
  pipe.unref();
  pipe.setEncoding('utf8');
  let pending = '';
  pipe.on('data', (chunk) => {
    pending += chunk;
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      let m;
      try {
        m = JSON.parse(line);
      } catch {
        continue;
      }
      if (m !== null && m.type === 'loops') setLoops(m.n);
    }
  });
  pipe.on('error', () => {});
}

serverListen.call(server, listenPath, () => {
  if (isMainThread) {
    writeControl('{"type":"ready","codeCache":"' + codeCache + '"}\n');
    if (Number.isInteger(options.commandFd)) readCommands(options.commandFd);
  } else {
    writeControl('{"type":"loop","loop":' + loopIndex + '}\n');
    parentPort.postMessage('serving');
  }
  reportLoad();
});

// GET /vercel-api/api/hello?name=you: a Vercel Node.js function, unchanged.
import type { IncomingMessage, ServerResponse } from 'node:http';

type Req = IncomingMessage & { query: Record<string, string | string[]> };
type Res = ServerResponse & { json(body: unknown): void };

export default function handler(req: Req, res: Res) {
  const name = typeof req.query.name === 'string' ? req.query.name : 'world';
  res.json({ hello: name });
}

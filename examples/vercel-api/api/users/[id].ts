// GET /vercel-api/api/users/ada: [id] arrives as req.query.id.
import { findUser } from '../_lib/users';

export const config = { maxDuration: 10 };

export default function handler(req: any, res: any) {
  const user = findUser(String(req.query.id));
  if (!user) return res.status(404).json({ error: 'no such user' });
  res.json(user);
}

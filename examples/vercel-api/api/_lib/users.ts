// Not a route: files and folders starting with _ are shared code.
import fs from 'node:fs';
import path from 'node:path';

// Read at run time, next to the project: every file of the project is
// deployed with it.
const users: Record<string, { name: string }> = JSON.parse(
  fs.readFileSync(path.join(process.cwd(), 'data', 'users.json'), 'utf8'),
);

export function findUser(id: string) {
  return users[id] ? { id, ...users[id] } : undefined;
}

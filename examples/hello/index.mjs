// A function: one Node.js process serves many of these at once.
export default async function handler(req, res) {
  const url = new URL(req.url, `http://${req.headers.host}`);
  const name = url.searchParams.get('name') ?? 'world';
  console.log(`saying hello to ${name}`);
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.end(`hello, ${name}\n`);
}

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CloudflareCredential } from '../credential.ts';
import { createR2Client } from '../r2.client.ts';
import type { R2Credentials } from '../r2.client.ts';

/**
 * An HTTP server that answers one R2 object (`object()`, read at each request) and honours
 * `Range` as R2 does, and `read(range?)`: the object as the R2 client returns it with this
 * credential and these keys (scrubbed, the range cut back to what was asked).
 */
export async function startRangedR2(
  object: () => Buffer,
  credential: CloudflareCredential,
  keys: R2Credentials,
): Promise<{ read(range?: string): Promise<string>; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const body = object();
    const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    if (!m) {
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
      return;
    }
    const start = m[1] === '' ? Math.max(0, body.length - Number(m[2])) : Number(m[1]);
    const end = m[1] !== '' && m[2] !== '' ? Math.min(Number(m[2]), body.length - 1) : body.length - 1;
    res.writeHead(206, {
      'content-range': `bytes ${start}-${end}/${body.length}`,
      'content-length': end - start + 1,
    });
    res.end(body.subarray(start, end + 1));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const r2 = createR2Client({ endpoint, maxResponseBytes: 10_000_000 });
  return {
    async read(range) {
      const got = await r2.send(keys, credential, {
        method: 'GET',
        accountId: 'a'.repeat(32),
        jurisdiction: 'default',
        bucket: 'logs',
        key: 'app.json',
        ...(range !== undefined ? { range } : {}),
      });
      return got.body.toString('utf8');
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

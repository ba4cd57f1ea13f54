import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDACTED } from './credential.ts';
import type { CloudflareCredential } from './credential.ts';
import { createR2Client } from './r2.client.ts';
import type { R2Credentials } from './r2.client.ts';

/**
 * attack23g: the R2 note of README ("a range read keeps a margin on each side of 108 bytes per
 * byte of the longest secret … so a secret it cuts through is found whole"). The margin is wide
 * enough for the longest spelling, but what an escape means also depends on what comes before
 * the secret's spelling: a backslash is an escape only after an even run of backslashes. A range
 * whose widened start falls inside a long run of backslashes (escaped backslashes: content, not
 * part of the secret's spelling) reads that run with the other parity, so the secret's first
 * `\u` escape is read as an escaped backslash and `u005A`, and the secret is not found. Each test
 * asserts the secure behaviour, so it FAILS on a bug; tests named HELD passed when written.
 */
const TOKEN = 'Zx9_Qw7-Lm3Np5Rt2Vy8Bc4Df6Gh1Jk0As9Ef7Fk';
const credential: CloudflareCredential = { type: 'api_token', apiToken: TOKEN };
const DERIVED = createHash('sha256').update(TOKEN).digest('hex');
const keys: R2Credentials = { accessKeyId: 'b'.repeat(32), secretAccessKey: DERIVED };

const u = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
/** The token with every character `\u`-escaped, as a JSON writer escaping everything spells it. */
const SPELLED = [...TOKEN].map(u).join('');

/** An object: a JSON string value of 20 000 backslashes (10 000 escaped), then the token escaped. */
const RUN = 20_000;
const OBJECT = Buffer.from(`{"log":"${'\\'.repeat(RUN)}${SPELLED}","n":1}`);
/** Where the token's spelling starts in the object. */
const AT = OBJECT.indexOf(SPELLED);

let server: Server;
let endpoint = '';

beforeAll(async () => {
  server = createServer((req, res) => {
    const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    if (!m) {
      res.writeHead(200, { 'content-length': OBJECT.length });
      res.end(OBJECT);
      return;
    }
    const start = m[1] === '' ? Math.max(0, OBJECT.length - Number(m[2])) : Number(m[1]);
    const end = m[1] !== '' && m[2] !== '' ? Math.min(Number(m[2]), OBJECT.length - 1) : OBJECT.length - 1;
    res.writeHead(206, {
      'content-range': `bytes ${start}-${end}/${OBJECT.length}`,
      'content-length': end - start + 1,
    });
    res.end(OBJECT.subarray(start, end + 1));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

const read = async (range?: string) => {
  const r2 = createR2Client({ endpoint, maxResponseBytes: 10_000_000 });
  const got = await r2.send(keys, credential, {
    method: 'GET',
    accountId: 'a'.repeat(32),
    jurisdiction: 'default',
    bucket: 'logs',
    key: 'app.json',
    ...(range !== undefined ? { range } : {}),
  });
  return got.body.toString('utf8');
};

describe('attack23g a range read whose margin starts inside a run of backslashes', () => {
  it('HELD: the whole object is scrubbed (the run read from its start: the token is found)', async () => {
    const whole = await read();
    expect(whole).toContain(REDACTED);
    expect(whole).not.toContain(SPELLED);
  });

  it('HELD: a range starting at the first byte of the spelling is scrubbed (the margin, even, keeps the parity)', async () => {
    const part = await read(`bytes=${AT}-${AT + SPELLED.length - 1}`);
    expect(part).toBe(REDACTED);
  });

  it('keeps the token out of a range starting one byte before its spelling (the margin then starts an odd number of backslashes before it: `\\u005A` is read as `\\\\` and `u005A`)', async () => {
    const part = await read(`bytes=${AT - 1}-${AT + SPELLED.length - 1}`);
    expect(part, part.slice(0, 80)).not.toContain(SPELLED);
  });

  it('keeps the token out of a range starting one byte into its spelling (`u005A\\u0078…`: everything but the backslash the agent already knows)', async () => {
    const part = await read(`bytes=${AT + 1}-${AT + SPELLED.length - 1}`);
    expect(part, part.slice(0, 80)).not.toContain(SPELLED.slice(1));
  });
});

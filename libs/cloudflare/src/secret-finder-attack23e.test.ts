import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hexOf as hex, jsEscape as u } from '@warden/testing';
import { REDACTED, credentialScrubber, secretsFinder } from './credential.ts';
import type { CloudflareCredential } from './credential.ts';

/**
 * attack23e: the finder (`secret-finder.ts`) against README "Audit trail" — a credential is found
 * "as is, in Base64 at any byte offset, hex in either case, UTF-16, and with any of its
 * characters escaped, in any mix: JSON escapes, percent-escapes in either case, XML and HTML
 * character references (…the named references of ASCII characters…)" — and the R2 note ("a
 * range read keeps a margin on each side of 18 bytes per byte of the longest secret (a `%XX`
 * with each character `\u`-escaped; a secret spelled longer than that, with references padded
 * with zeros, is found in whole reads but may be cut by a range)"). This attack looks at what
 * Warden itself (or the agent) decodes after the scrub: JSON.parse of an answer, R2's
 * `decodeXml`, a body read as UTF-16 from any byte. Each test asserts the secure behaviour, so it
 * FAILS on a bug; tests named HELD passed when written and stay as regression tests. Out of
 * scope (the claim's own "not found"): Base64 broken into lines, hex in mixed case, an encoding
 * of an encoding of one of the secret's characters.
 */
// A token of Cloudflare's shape that holds "fj" (about 1 token in 100 does).
const TOKEN = 'Zx9_Qw7-Lm3Np5Rt2Vy8Bc4Df6Gh1Jk0As9Efj7Fk';
const token: CloudflareCredential = { type: 'api_token', apiToken: TOKEN };
/** The R2 secret derived from the token (SHA-256 hex), which every R2 call also scrubs. */
const DERIVED = createHash('sha256').update(TOKEN).digest('hex');

const scrub = (body: string | Buffer, also: string[] = []) =>
  credentialScrubber(token, also)(typeof body === 'string' ? Buffer.from(body, 'utf8') : body);
const str = (body: string, also: string[] = []) => scrub(body, also).toString('utf8');

const le = (text: string) => Buffer.from(text, 'utf16le');
const be = (text: string) => Buffer.from(text, 'utf16le').swap16();

/** Whether `bytes` still hold `secret` as UTF-16 (either order) starting at any byte. */
const holdsUtf16 = (bytes: Buffer, secret: string) =>
  bytes.includes(le(secret)) || bytes.includes(be(secret));

describe('attack23e UTF-16 the finder only looks for in the body as is, at an even offset', () => {
  it('finds the token as UTF-16 one byte into the body (a length byte or one UTF-8 byte before it: an odd offset)', () => {
    for (const [order, wide] of [
      ['le', le],
      ['be', be],
    ] as const) {
      for (const before of [Buffer.from('x'), Buffer.from([0x0b]), Buffer.from('{"k":"é!', 'utf8')]) {
        const body = Buffer.concat([before, wide(TOKEN), Buffer.from('"}')]);
        expect(before.length % 2, 'the token starts at an odd offset').toBe(1);
        const out = scrub(body);
        // The agent (r2.get as base64, a text answer read back) decodes UTF-16 from byte 1.
        expect(
          holdsUtf16(out, TOKEN),
          `${order} after ${before.toString('hex')}: ${out.toString('hex')}`,
        ).toBe(false);
      }
    }
  });

  it('finds the token as UTF-16 in a JSON answer, its NULs written \\u0000 (the only way JSON carries them): what JSON.parse of the scrubbed answer gives', () => {
    for (const order of ['le', 'be'] as const) {
      const chars = [...TOKEN].map((c) => (order === 'le' ? `${c}\\u0000` : `\\u0000${c}`)).join('');
      const out = str(`{"success":true,"result":{"value":"${chars}"}}`);
      // Warden's own reading of the answer (toResponse): JSON.parse of the scrubbed bytes.
      const value = (JSON.parse(out) as { result: { value: string } }).result.value;
      expect(holdsUtf16(Buffer.from(value, 'latin1'), TOKEN), `${order}: ${out}`).toBe(false);
    }
  });

  it('finds the token as UTF-16 with its NULs percent-escaped (%00), the spelling decodeURIComponent reads back', () => {
    const spelled = [...TOKEN].map((c) => `${c}%00`).join('');
    const out = str(`https://example.com/?blob=${spelled}`);
    expect(holdsUtf16(Buffer.from(decodeURIComponent(out), 'latin1'), TOKEN), out).toBe(false);
  });

  it("finds the token as UTF-16 with its NULs as character references (&#0;), which r2-gateway's decodeXml decodes to NUL", () => {
    const spelled = [...TOKEN].map((c) => `${c}&#0;`).join('');
    const out = str(`<ListBucketResult><Contents><Key>${spelled}</Key></Contents></ListBucketResult>`);
    // decodeXml (libs/tools/src/r2-gateway.ts) reads `&#\d+;` with String.fromCodePoint.
    const decoded = out.replace(/&#(\d+);/g, (_, d: string) => String.fromCodePoint(Number(d)));
    expect(holdsUtf16(Buffer.from(decoded, 'latin1'), TOKEN), out).toBe(false);
  });

  it('HELD: the token as UTF-16 at an even offset, both orders, with a BOM and after an even prefix', () => {
    for (const wide of [le, be]) {
      for (const before of [Buffer.alloc(0), Buffer.from([0xff, 0xfe]), Buffer.from('ab')]) {
        const out = scrub(Buffer.concat([before, wide(TOKEN), wide(' tail')]));
        expect(holdsUtf16(out, TOKEN)).toBe(false);
        expect(out.includes(Buffer.from(REDACTED))).toBe(true);
      }
    }
  });
});

describe('attack23e HTML named references of ASCII characters', () => {
  it('finds the token with "fj" written &fjlig; (the one HTML named reference whose value is two ASCII letters)', () => {
    expect(TOKEN).toContain('fj');
    const spelled = TOKEN.replace('fj', '&fjlig;');
    const out = str(`<p>${spelled}</p>`);
    // What an HTML reader (a browser, he.decode, the agent) gives back.
    expect(out.replaceAll('&fjlig;', 'fj'), out).not.toContain(TOKEN);
  });
});

describe('attack23e JavaScript string escapes (the finder documents "JSON (and JavaScript) string escapes")', () => {
  it.each([
    ['\\xXX', (c: string) => `\\x${hex(c.charCodeAt(0), 2)}`],
    ['\\u{XX}', (c: string) => `\\u{${hex(c.charCodeAt(0), 2)}}`],
  ])(
    'finds the token in a Worker script (JavaScript source, as the API returns it) with its characters written %s',
    (_, esc) => {
      const source = `export default { fetch() { const t = "${[...TOKEN].map(esc).join('')}"; return new Response(t); } };`;
      const out = str(source);
      // What the script's own string literal evaluates to.
      const literal = /const t = "([^"]*)"/.exec(out)?.[1] ?? '';
      const value = literal.replace(
        /\\x([0-9a-fA-F]{2})|\\u\{([0-9a-fA-F]+)\}/g,
        (_m, x?: string, cp?: string) => String.fromCodePoint(parseInt(x ?? (cp as string), 16)),
      );
      expect(value, out).not.toBe(TOKEN);
    },
  );
});

describe('attack23e the margin of an R2 range read (SecretFinder.reach)', () => {
  /** A character reference of `c` with each of its characters \u-escaped (no padding zeros). */
  const uRef = (c: string) => [...`&#x${c.charCodeAt(0).toString(16)};`].map(u).join('');

  it('reaches as far as a character reference with each of its characters \\u-escaped, no zeros (\\u0026\\u0023\\u0078\\u0036\\u0036\\u003b for "f": 36 bytes a character, twice the 18 the README names)', () => {
    // The finder of an R2 call (`r2Finder`): the token, the signing secret and the derived one.
    const finder = secretsFinder([TOKEN, DERIVED, DERIVED]);
    const spelled = [...DERIVED].map(uRef).join('');
    expect(spelled.length).toBe(36 * DERIVED.length);
    // Found whole (the JSON reading, then the references reading)…
    expect(finder.find(Buffer.from(spelled))).toEqual([[0, spelled.length]]);
    // …but a range read keeps only `reach` bytes on each side: cut, each half comes back.
    expect(finder.reach, `reach ${finder.reach}, spelling ${spelled.length} bytes`).toBeGreaterThanOrEqual(
      spelled.length,
    );
  });

  it('reaches as far as the token with "_" as &lowbar; and every other character a reference, each character \\u-escaped', () => {
    const finder = secretsFinder([TOKEN]);
    const spelled = [...TOKEN]
      .map((c) => [...(c === '_' ? '&lowbar;' : `&#${c.charCodeAt(0)};`)].map(u).join(''))
      .join('');
    expect(finder.find(Buffer.from(spelled))).toEqual([[0, spelled.length]]);
    expect(finder.reach, `reach ${finder.reach}, spelling ${spelled.length} bytes`).toBeGreaterThanOrEqual(
      spelled.length,
    );
  });
});

describe('attack23e HELD: what the finder does read', () => {
  it('HELD: Base64 of the token inside a longer Base64 blob, at every offset: what is left beside [REDACTED] decodes to at most 2 bytes of it', () => {
    const pad = Buffer.from('0123456789abcdefghij');
    for (let before = 0; before < 6; before++) {
      for (let after = 0; after < 6; after++) {
        for (const alphabet of ['base64', 'base64url'] as const) {
          const blob = Buffer.concat([
            pad.subarray(0, before),
            Buffer.from(TOKEN),
            pad.subarray(0, after),
          ]).toString(alphabet);
          const out = str(`{"blob":"${blob}"}`);
          expect(out, `${before}/${after} ${alphabet}`).toContain(REDACTED);
          const left = /"blob":"([^"]*)\[REDACTED\]/.exec(out)?.[1] ?? '';
          const right = /\[REDACTED\]([^"]*)"/.exec(out)?.[1] ?? '';
          // Each remnant decoded on its own (the right one realigned as a reader would try).
          const readable = [
            Buffer.from(left.slice(0, left.length - (left.length % 4)), alphabet).toString('latin1'),
            ...[0, 1, 2, 3].map((shift) =>
              Buffer.from(`${'A'.repeat(shift)}${right}`, alphabet).toString('latin1'),
            ),
          ];
          for (const text of readable)
            for (let at = 0; at + 3 <= TOKEN.length; at++)
              expect(text.includes(TOKEN.slice(at, at + 3)), `${before}/${after} ${alphabet}: ${out}`).toBe(
                false,
              );
        }
      }
    }
  });

  it('HELD: a lone surrogate escape right before the first \\u-escaped character (\\uD800\\u005A…): JSON.parse reads both, and so does the finder', () => {
    for (const lone of ['\\uD800', '\\udbff', '\\uDC00']) {
      const body = `{"v":"${lone}${[...TOKEN].map(u).join('')}"}`;
      expect(str(body)).toBe(`{"v":"${lone}${REDACTED}"}`);
    }
  });

  it('HELD: escapes JSON.parse rejects (\\U0041, \\x41 in JSON) are not read, the rest of the body byte for byte', () => {
    const body = `{"a":"\\U005A ${TOKEN.slice(0, 10)}","b":"%5a%5A&#X5a;"}`;
    expect(str(body)).toBe(body);
  });
});

describe('attack23e HELD: cost of bodies the earlier attacks did not try', () => {
  const best = (body: Buffer, runs = 2) => {
    const s = credentialScrubber(token, [DERIVED]);
    s(Buffer.from('warm % \\u0041 &amp; &q'));
    let min = Infinity;
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      s(body);
      min = Math.min(min, performance.now() - t);
    }
    return min;
  };
  const fill = (unit: string, bytes = 10_000_000) =>
    Buffer.from(unit.repeat(Math.floor(bytes / Buffer.byteLength(unit))));
  const plain = () => best(fill('{"id":"023e105f4ecef8ad9ca31a8372d0c353","name":"example.com"},'), 3);

  it.each([
    ['"&abcdefghijklmnop" (a 16-letter name read and looked up at every "&")', '&abcdefghijklmnop'],
    ['"&DiacriticalGrav" (the longest name, one letter short)', '&DiacriticalGrav'],
    ['"&a1" (a name with a digit)', '&a1'],
    ['"\\uD800" (lone surrogates, each tried as a pair)', '\\uD800'],
    ['"&#0;" (references to NUL)', '&#0;'],
    ['"\\u0026amp;" (a named reference spelled with a JSON escape)', '\\u0026amp;'],
  ])('HELD: scrubs 10 MB of %s within 30x a plain 10 MB JSON body', (_, unit) => {
    const base = plain();
    const hostile = best(fill(unit));
    expect(hostile, `plain ${base.toFixed(0)} ms, hostile ${hostile.toFixed(0)} ms`).toBeLessThan(
      30 * Math.max(base, 20),
    );
  });
});

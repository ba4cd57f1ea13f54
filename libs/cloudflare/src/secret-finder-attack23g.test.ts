import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { credentialScrubber } from './credential.ts';
import type { CloudflareCredential } from './credential.ts';

/**
 * attack23g: the UTF-16 parity rule in decoded readings, and the cost of bodies made of the
 * escapes the last fix added (`\0`, octal, `\x`, `\u{…}`) and of NULs (the UTF-16 needles).
 * Tests named HELD passed when written and stay as regression tests.
 */
const TOKEN = 'Zx9_Qw7-Lm3Np5Rt2Vy8Bc4Df6Gh1Jk0As9Ef7Fk';
const token: CloudflareCredential = { type: 'api_token', apiToken: TOKEN };
const DERIVED = createHash('sha256').update(TOKEN).digest('hex');

describe('attack23g HELD: the UTF-16 parity rule in a decoded reading', () => {
  it('HELD: the token as UTF-16LE at an odd offset of the JSON reading, a NUL before it (so BE is found one byte earlier): no character of it is left', () => {
    for (const lead of ['', 'a', 'ab', '\\u0041', '\\u00e9']) {
      const wide = Buffer.from(`\0${TOKEN}`, 'utf16le').subarray(1);
      const spelled = [...wide].map((b) => (b === 0 ? '\\u0000' : String.fromCharCode(b))).join('');
      const out = credentialScrubber(token)(Buffer.from(`{"v":"${lead}${spelled}"}`));
      const decoded = Buffer.from(JSON.parse(out.toString('utf8')).v as string, 'latin1');
      for (const order of [Buffer.from(TOKEN, 'utf16le'), Buffer.from(TOKEN, 'utf16le').swap16()])
        expect(decoded.includes(order.subarray(0, 8)), `${lead}: ${out.toString('utf8')}`).toBe(false);
    }
  });
});

describe('attack23g HELD: cost of bodies of the new escapes', () => {
  const best = (body: Buffer) => {
    const s = credentialScrubber(token, [DERIVED]);
    s(Buffer.from('warm % \\u0041 &amp; &q \\x41 \\0'));
    let min = Infinity;
    for (let i = 0; i < 2; i++) {
      const t = performance.now();
      s(body);
      min = Math.min(min, performance.now() - t);
    }
    return min;
  };
  const fill = (unit: string, bytes = 10_000_000) =>
    Buffer.from(unit.repeat(Math.floor(bytes / Buffer.byteLength(unit))));
  it.each([
    ['NUL bytes', '\0'],
    ['"a\\0" (UTF-16 text)', 'a\0'],
    ['"\\7" (one-digit octal)', '\\7'],
    ['"\\0" (NUL escapes)', '\\0'],
    ['"\\x4" (\\x one digit short)', '\\x4'],
    ['"\\u{" (unterminated)', '\\u{'],
    ['"\\u{1F600}" (4-byte characters)', '\\u{1F600}'],
    ['"&fjlig" (no ";")', '&fjlig'],
  ])('HELD: scrubs 10 MB of %s within 30x a plain 10 MB JSON body', (_, unit) => {
    const base = best(fill('{"id":"023e105f4ecef8ad9ca31a8372d0c353","name":"example.com"},'));
    const hostile = best(fill(unit));
    expect(hostile, `plain ${base.toFixed(0)} ms, hostile ${hostile.toFixed(0)} ms`).toBeLessThan(
      30 * Math.max(base, 20),
    );
  });
});

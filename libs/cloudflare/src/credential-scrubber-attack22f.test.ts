import { describe, expect, it } from 'vitest';
import { seededRandom as rng } from '@warden/testing';
import { REDACTED, credentialScrubber } from './credential.ts';
import type { CloudflareCredential } from './credential.ts';

/**
 * attack22f: encodings of an echoed credential that `credentialScrubber` may leave decodable, and
 * randomized (fixed-seed) checks of the Base64-at-any-offset and byte-for-byte claims. Each test
 * asserts the secure behaviour, so it FAILS on a bug. Tests named HELD passed when written.
 * Found beyond the scrubber's claim and left as documented limits (README): Base64 broken into
 * lines (MIME, or `\n` in JSON), hex in mixed case, Base64 of the percent-encoded token.
 */
const TOKEN_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
const pick = (r: () => number, alphabet: string, n: number) =>
  Array.from({ length: n }, () => alphabet[Math.floor(r() * alphabet.length)]).join('');
const randBytes = (r: () => number, n: number) =>
  Buffer.from(Array.from({ length: n }, () => Math.floor(r() * 256)));

const TOKEN = 'Zx9_Qw7-Lm3Np5Rt2Vy8Bc4Df6Gh1Jk0As9Ed7Fk';
const token: CloudflareCredential = { type: 'api_token', apiToken: TOKEN };
const KEY = '0123456789abcdef0123456789abcdef01234';
const globalKey: CloudflareCredential = { type: 'global_api_key', email: 'a@b.co', apiKey: KEY };
const str = (cred: CloudflareCredential, text: string) =>
  credentialScrubber(cred)(Buffer.from(text, 'utf8')).toString('utf8');

/** Whether any REDACTED-free piece of `out`, Base64-decoded at any character alignment, holds `secret`. */
function base64Leaks(out: string, secret: string, stripWhitespace = false): boolean {
  for (let piece of out.split(REDACTED)) {
    if (stripWhitespace) piece = piece.replace(/\s+/g, '');
    for (let k = 0; k < 4; k++) {
      const part = piece.slice(k).replace(/[^A-Za-z0-9+/_-]/g, '');
      const decoded = Buffer.from(part.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
      if (decoded.includes(Buffer.from(secret))) return true;
    }
  }
  return false;
}
const pctAll = (s: string, lower: boolean) =>
  [...Buffer.from(s)]
    .map((b) => `%${b.toString(16).padStart(2, '0')[lower ? 'toLowerCase' : 'toUpperCase']()}`)
    .join('');

describe('attack22f Base64 at any offset (randomized, fixed seed)', () => {
  it('HELD: token lengths 37..42, 0..7 random bytes before and after, both alphabets, padded or not', () => {
    const r = rng(22);
    const misses: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const secret = pick(r, TOKEN_ALPHABET, 37 + (i % 6));
      const cred: CloudflareCredential = { type: 'api_token', apiToken: secret };
      const data = Buffer.concat([
        randBytes(r, Math.floor(r() * 8)),
        Buffer.from(secret),
        randBytes(r, Math.floor(r() * 8)),
      ]);
      let enc = data.toString(r() < 0.5 ? 'base64' : 'base64url');
      if (r() < 0.5) enc = enc.replace(/=+$/, '');
      const out = credentialScrubber(cred)(Buffer.from(`{"v":"${enc}"}`)).toString('utf8');
      if (base64Leaks(out, secret)) misses.push(`${secret} in ${enc}`);
    }
    expect(misses).toEqual([]);
  });

  it('HELD: Basic auth `user:token` (user lengths 0..5) and `token:`, Global API Key likewise', () => {
    const misses: string[] = [];
    for (const [cred, secret] of [
      [token, TOKEN],
      [globalKey, KEY],
    ] as const) {
      for (let n = 0; n < 6; n++) {
        for (const plain of [`${'u'.repeat(n)}:${secret}`, `${secret}:`, `${secret}:${'p'.repeat(n)}`]) {
          for (const alphabet of ['base64', 'base64url'] as const) {
            const out = str(cred, `Authorization: Basic ${Buffer.from(plain).toString(alphabet)}`);
            if (base64Leaks(out, secret)) misses.push(`${alphabet} ${plain}`);
          }
        }
      }
    }
    expect(misses).toEqual([]);
  });

  it('HELD: Global API Key Base64 at offsets 0..2 in random bytes', () => {
    const r = rng(37);
    const misses: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const data = Buffer.concat([randBytes(r, i % 3), Buffer.from(KEY), randBytes(r, Math.floor(r() * 5))]);
      const enc = data.toString(i % 2 ? 'base64' : 'base64url');
      if (base64Leaks(str(globalKey, enc), KEY)) misses.push(enc);
    }
    expect(misses).toEqual([]);
  });
});

describe('attack22f percent-encoding (IN the claim: "percent-encoded, either case of hex digits")', () => {
  it('finds the token with every character percent-encoded, upper-case hex digits (%5A%78...)', () => {
    const out = str(token, `{"errors":[{"message":"bad header ${pctAll(TOKEN, false)}"}]}`);
    expect(decodeURIComponent(out)).not.toContain(TOKEN);
  });

  it('finds the token with every character percent-encoded, lower-case hex digits (%5a%78...)', () => {
    const out = str(token, `?token=${pctAll(TOKEN, true)}`);
    expect(decodeURIComponent(out)).not.toContain(TOKEN);
  });

  it('finds the token with only "-" and "_" percent-encoded (%2D / %5f), as RFC 1738-era encoders do', () => {
    const spelled = TOKEN.replace(/-/g, '%2D').replace(/_/g, '%5f');
    const out = str(token, `url=https://x/?t=${spelled}`);
    expect(decodeURIComponent(out)).not.toContain(TOKEN);
  });

  it('finds the Global API Key with every digit percent-encoded (%30%31...)', () => {
    const out = str(globalKey, `k=${pctAll(KEY, false)}`);
    expect(decodeURIComponent(out)).not.toContain(KEY);
  });

  it('HELD: percent-encoding as encodeURIComponent writes it (identity for these alphabets)', () => {
    expect(str(token, `t=${encodeURIComponent(TOKEN)}`)).not.toContain(TOKEN);
  });
});

describe('attack22f forms BEYOND the claim (reported separately)', () => {
  it('HELD (ASCII token bytes rarely give + or / inside the span): percent-encoded standard Base64 of `Bearer <token>` (%2B, %2F, %3D) in a URL', () => {
    const r = rng(5);
    const misses: string[] = [];
    for (let i = 0; i < 200; i++) {
      const secret = pick(r, TOKEN_ALPHABET, 40);
      const cred: CloudflareCredential = { type: 'api_token', apiToken: secret };
      const enc = encodeURIComponent(Buffer.from(`Bearer ${secret}`).toString('base64'));
      if (!/%2[BF]/.test(enc)) continue;
      const out = credentialScrubber(cred)(Buffer.from(`u=${enc}`)).toString('utf8');
      if (base64Leaks(decodeURIComponent(out), secret)) misses.push(enc);
    }
    expect(misses).toEqual([]);
  });

  it('HELD: random bodies (JSON-ish text with escapes, random bytes, REDACTED-like text) without the secret are unchanged', () => {
    const r = rng(99);
    const pieces = [
      '\\u0041',
      '\\/',
      '\\\\',
      '\\"',
      '\\n',
      '\\u00e9',
      '\\ud83d\\ude00',
      '%2D',
      '[REDACTED]',
      '"',
      '{',
      'Zx9_Qw7',
    ];
    const changed: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const parts: Buffer[] = [];
      for (let k = 0; k < 20; k++) {
        const x = r();
        if (x < 0.4) parts.push(Buffer.from(pieces[Math.floor(r() * pieces.length)] as string));
        else if (x < 0.7) parts.push(Buffer.from(pick(r, TOKEN_ALPHABET, 1 + Math.floor(r() * 30))));
        else parts.push(randBytes(r, 1 + Math.floor(r() * 8)));
      }
      const body = Buffer.concat(parts);
      const out = credentialScrubber(token)(body);
      if (!out.equals(body)) changed.push(body.toString('hex'));
    }
    expect(changed).toEqual([]);
  });
});

import { describe, expect, it } from 'vitest';
import { REDACTED, credentialScrubber } from './credential.ts';
import type { CloudflareCredential } from './credential.ts';

/**
 * attack22e: forms of a credential that `credentialScrubber` may miss, JSON it may corrupt, and
 * cost. Each test asserts the secure/correct behaviour, so it FAILS on a bug. `toResponse` is not
 * exported: it applies the same scrubber to the body and to each kept header as a UTF-8 string,
 * so the header cases are the scrubber applied to the header value.
 */
// A real Cloudflare API token is 40 characters (40 % 3 = 1), unlike the 42 of the existing tests.
const TOKEN = 'Zx9_Qw7-Lm3Np5Rt2Vy8Bc4Df6Gh1Jk0As9Ed7Fk';
if (TOKEN.length !== 40) throw new Error('token length');
const token: CloudflareCredential = { type: 'api_token', apiToken: TOKEN };
const KEY = '0123456789abcdef0123456789abcdef01234'; // Global API Key: 37 lowercase hex
const globalKey: CloudflareCredential = { type: 'global_api_key', email: 'a@b.co', apiKey: KEY };
const QUOTED = 'r2"secret\\with/quotes';

const run = (cred: CloudflareCredential, text: string | Buffer, also: string[] = []) =>
  credentialScrubber(cred, also)(typeof text === 'string' ? Buffer.from(text, 'utf8') : text);
const str = (cred: CloudflareCredential, text: string, also: string[] = []) =>
  run(cred, text, also).toString('utf8');
const b64 = (t: string, enc: 'base64' | 'base64url' = 'base64') => Buffer.from(t, 'utf8').toString(enc);
const u = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

describe('attack22e Base64 at offset 0 with data after it', () => {
  it.each([
    ['JSON holding the token', b64(`{"t":"${TOKEN}"}`)],
    ['token then ".sig" (JWT-like)', b64(`${TOKEN}.sig`)],
    ['Basic auth with the token as the user', `Basic ${b64(`${TOKEN}:`)}`],
    ['three bytes in, URL alphabet', b64(`abc${TOKEN}xyz`, 'base64url')],
  ])('leaves no decodable token: %s', (_, text) => {
    const out = str(token, text);
    const decoded = Buffer.from(out.replace(/^Basic /, ''), 'base64').toString('latin1');
    expect(decoded, `returned ${out}`).not.toContain(TOKEN);
  });

  it('HELD: offset 0 with nothing after it, and offsets 1 and 2 with data after', () => {
    for (const text of [b64(TOKEN), b64(`a${TOKEN}zz`), b64(`ab${TOKEN}zz`)])
      expect(Buffer.from(str(token, text), 'base64').toString('latin1')).not.toContain(TOKEN);
  });
});

describe('attack22e hex and case', () => {
  it('finds the token bytes in upper-case hex', () => {
    const out = str(token, `dump: ${Buffer.from(TOKEN).toString('hex').toUpperCase()}`);
    expect(Buffer.from(out.slice(6), 'hex').toString('latin1')).not.toContain(TOKEN);
  });

  it('finds a Global API Key (37 hex chars, odd length) in upper case', () => {
    expect(str(globalKey, `{"key":"${KEY.toUpperCase()}"}`).toLowerCase()).not.toContain(KEY);
  });

  it('HELD: Global API Key as is, \\u-escaped in mixed-case hex digits, and half escaped', () => {
    const mixed = [...KEY].map((c, i) => (i % 2 ? c : u(c).toUpperCase().replace('\\U', '\\u'))).join('');
    for (const body of [`{"k":"${KEY}"}`, `{"k":"${mixed}"}`]) {
      const out = str(globalKey, body);
      expect(JSON.stringify(JSON.parse(out))).not.toContain(KEY);
      expect(out).toContain(REDACTED);
    }
  });
});

describe('attack22e JSON escapes other than \\uXXXX of a plain character', () => {
  it('finds the Base64 of an R2 hex secret\'s raw bytes whose "/" is written "\\/" (PHP json_encode style)', () => {
    // An API token's Base64 never holds "/" or "+" (ASCII bytes); raw bytes of a hex secret do.
    const HEX = 'a3f1'.repeat(16);
    const form = Buffer.from(HEX, 'hex').toString('base64');
    expect(form).toContain('/');
    const body = `{"auth":"${form.replaceAll('/', '\\/')}"}`;
    expect(JSON.parse(body).auth).toBe(form);
    const value = JSON.parse(str(token, body, [HEX])).auth as string;
    expect(value, `returned ${value}`).not.toBe(form);
  });

  it('finds an alsoSecret holding a quote spelled with \\u0022 and a backslash spelled \\u005c', () => {
    const body = `{"m":"${QUOTED.replace('\\', '\\u005c').replace('"', '\\u0022')}"}`;
    expect(JSON.parse(body).m).toBe(QUOTED);
    expect(JSON.parse(str(token, body, [QUOTED])).m).not.toContain(QUOTED);
  });

  it('finds an alsoSecret holding "/" written "\\/"', () => {
    const body = `{"m":"${JSON.stringify(QUOTED).slice(1, -1).replace('/', '\\/')}"}`;
    expect(JSON.parse(body).m).toBe(QUOTED);
    expect(JSON.parse(str(token, body, [QUOTED])).m).not.toContain(QUOTED);
  });

  it('finds an alsoSecret with a non-BMP character spelled as a \\u surrogate pair', () => {
    const secret = 'r2-\u{1F511}-secret-key';
    const body = `{"m":"r2-\\ud83d\\udd11-secret-key"}`;
    expect(JSON.parse(body).m).toBe(secret);
    expect(JSON.parse(str(token, body, [secret])).m).not.toContain(secret);
  });

  it('HELD: mixed raw/\\u spelling, \\\\u0054 (escaped backslash) keeps its value, \\u inside percent and hex forms', () => {
    const mixed = [...TOKEN].map((c, i) => (i % 3 ? c : u(c))).join('');
    const out1 = str(token, `{"a":"${mixed}"}`);
    expect(JSON.parse(out1).a).toBe(REDACTED);
    const lit = `{"a":"\\\\u0054${TOKEN.slice(1)}","b":"\\u005cu0041"}`;
    const out2 = str(token, lit);
    expect(JSON.parse(out2)).toEqual(JSON.parse(lit));
    const hex = Buffer.from(TOKEN).toString('hex');
    const out3 = str(token, `{"h":"${[...hex].map((c) => u(c)).join('')}"}`);
    expect(JSON.parse(out3).h).toBe(REDACTED);
  });

  it('HELD: the REDACTED replacement after \\u decoding keeps JSON valid with the same other values', () => {
    const body = `{"a":"caf\\u00e9 \\u2028 \\u007f \\u0022q\\u0022 \\n","t":"${[...TOKEN].map(u).join('')}","s":"\\ud83d\\ude00"}`;
    const out = str(token, body);
    const before = JSON.parse(body);
    const after = JSON.parse(out);
    expect(after).toEqual({ ...before, t: REDACTED });
  });
});

describe('attack22e bytes and headers', () => {
  it('keeps the non-secret bytes of a binary body that also holds the token', () => {
    const body = Buffer.concat([
      Buffer.from([0xff, 0xfe, 0x00, 0xc3]),
      Buffer.from(TOKEN),
      Buffer.from([0x80, 0xe2]),
    ]);
    const out = run(token, body);
    expect(out.toString('latin1')).not.toContain(TOKEN);
    expect(
      out.equals(Buffer.concat([body.subarray(0, 4), Buffer.from(REDACTED), body.subarray(-2)])),
      `returned ${out.toString('hex')}`,
    ).toBe(true);
  });

  it('HELD: invalid UTF-8 without a secret comes back byte for byte, also with a \\u in it', () => {
    const body = Buffer.concat([
      Buffer.from([0xff, 0xc3]),
      Buffer.from('\\u0041 \\u00'),
      Buffer.from([0x80]),
    ]);
    expect(run(token, body).equals(body)).toBe(true);
  });

  it('HELD: headers (cf-ray, ratelimit) with the token as is, Base64 one byte in, \\u-escaped', () => {
    for (const v of [`ray=${TOKEN}`, b64(`x${TOKEN}`), [...TOKEN].map(u).join('')]) {
      const out = str(token, v);
      expect(out).toContain(REDACTED);
      expect(out).not.toContain(TOKEN);
    }
  });
});

describe('attack22e cost', () => {
  const time = (cred: CloudflareCredential, body: Buffer) => {
    const scrub = credentialScrubber(cred);
    scrub(Buffer.from('warm'));
    const t = performance.now();
    scrub(body);
    return performance.now() - t;
  };
  it.each([
    ['backslashes', () => Buffer.alloc(10_000_000, '\\')],
    ['\\u00 prefixes', () => Buffer.from('\\u00'.repeat(2_500_000))],
    ['\\u with invalid hex', () => Buffer.from('\\uZZZZ'.repeat(1_600_000))],
    ['near-miss of the token prefix', () => Buffer.from(`${TOKEN.slice(0, 39)}!`.repeat(250_000))],
    [
      'near-miss, \\u-escaped',
      () => Buffer.from(`${[...TOKEN.slice(0, 30)].map(u).join('')}!`.repeat(55_000)),
    ],
  ])('HELD: 10 MB of %s within 1000 ms (linear; machine is loaded)', (_, make) => {
    const body = make();
    expect(body.length).toBeLessThanOrEqual(10 * 1024 * 1024);
    expect(time(token, body)).toBeLessThan(1000);
  });

  it('HELD: 10 MB with many token copies \\u-escaped (replacement path) within 1500 ms', () => {
    const body = Buffer.from(`["${[...TOKEN].map(u).join('')}",`.repeat(40_000) + '0]');
    expect(time(token, body)).toBeLessThan(1500);
  });
});

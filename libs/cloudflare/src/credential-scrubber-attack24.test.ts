import { describe, expect, it } from 'vitest';
import { REDACTED, credentialScrubber } from './credential.ts';
import type { CloudflareCredential } from './credential.ts';

/**
 * attack24: spellings of the vaulted token (and a vaulted R2 secret) that combine the encodings
 * `credentialScrubber` claims (JSON/JS escapes, percent-encoding, HTML references, Base64,
 * UTF-16) in ways earlier attacks did not try. Each test asserts the secure behaviour (the
 * secret is redacted), so it FAILS on a bug; tests named HELD passed when written.
 */
const TOKEN = 'Zx9_Qw7-Lm3Np5Rt2Vy8Bc4Df6Gh1Jk0As9Ed7Fk';
const token: CloudflareCredential = { type: 'api_token', apiToken: TOKEN };
/** A vaulted R2 Secret Access Key whose Base64 holds "/" and "+". */
const R2 = 'S3cr3t/R2+key=' + 'x'.repeat(30);

const scrub = (text: string, also: string[] = []) =>
  credentialScrubber(token, also)(Buffer.from(text, 'utf8')).toString('utf8');
const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
/** `\u00XX` of every character. */
const uAll = (s: string) => [...s].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');

describe('attack24 Base64 of the token as UTF-16', () => {
  it('redacts the token as Base64 of its UTF-16LE bytes (PowerShell -EncodedCommand, .NET Convert.ToBase64String(Encoding.Unicode…))', () => {
    // UTF-16 and Base64 are each claimed; the finder holds Base64 forms of the UTF-8 bytes only.
    const body = JSON.stringify({ command: b64(Buffer.from(TOKEN, 'utf16le')) });
    const out = scrub(body);
    expect(out).toContain(REDACTED);
    expect(Buffer.from(JSON.parse(out).command as string, 'base64').toString('utf16le')).not.toContain(
      TOKEN.slice(0, 12),
    );
  });
});

describe('attack24 HELD: Base64 and hex spellings with escapes over them', () => {
  const cases: Array<[string, string, string[]]> = [
    [
      'Base64 of an R2 secret with "/" JSON-escaped as "\\/" (PHP json_encode)',
      JSON.stringify({ v: b64(R2) }).replace(/\//g, '\\/'),
      [R2],
    ],
    [
      'Base64 of an R2 secret percent-encoded in a URL query (%2B %2F %3D)',
      `{"u":"https://x/?a=${encodeURIComponent(b64(R2))}"}`,
      [R2],
    ],
    ['base64url of an R2 secret', `{"u":"${Buffer.from(R2).toString('base64url')}"}`, [R2]],
    [
      'Base64 of the token, every character %XX',
      `{"u":"${[...Buffer.from(b64(TOKEN))].map((b) => `%${b.toString(16)}`).join('')}"}`,
      [],
    ],
    [
      'Base64 of the token, every character an HTML numeric reference',
      `<p>${[...b64(TOKEN)].map((c) => `&#${c.charCodeAt(0)};`).join('')}</p>`,
      [],
    ],
    ['Base64 of the token, every character \\u-escaped', `{"e":"${uAll(b64(TOKEN))}"}`, []],
    ['hex of the token, every digit \\u-escaped', `{"h":"${uAll(Buffer.from(TOKEN).toString('hex'))}"}`, []],
    [
      'the token in legacy JavaScript octal escapes',
      `var s = "${[...TOKEN].map((c) => `\\${c.charCodeAt(0).toString(8)}`).join('')}";`,
      [],
    ],
  ];
  for (const [name, body, also] of cases) {
    it(`HELD: ${name}`, () => {
      expect(scrub(body, also)).toContain(REDACTED);
    });
  }
});

import { describe, expect, it } from 'vitest';
import { REDACTED, credentialScrubber } from './credential.ts';
import type { CloudflareCredential } from './credential.ts';

const TOKEN = 'Tk_4bcdefGhijklmnopqrstuvwxyz0123456789-AB';
const credential: CloudflareCredential = { type: 'api_token', apiToken: TOKEN };
/** An R2-style secret (hex) and one a tenant chose with characters JSON escapes. */
const HEX = 'a3f1'.repeat(16);
const QUOTED = 'r2"secret\\with/quotes';

const scrub = (text: string) =>
  credentialScrubber(credential, [HEX, QUOTED])(Buffer.from(text, 'utf8')).toString('utf8');
const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');

describe('credentialScrubber', () => {
  it.each([
    ['as is', TOKEN],
    ['in a JSON string', JSON.stringify({ log: `token=${TOKEN}` })],
    ['Basic auth', `authorization: Basic ${b64(`user:${TOKEN}`)}`],
    ['Base64 of the Bearer header', b64(`Bearer ${TOKEN}`)],
    ['Base64 one byte in', b64(`x${TOKEN}y`)],
    ['Base64 URL alphabet, two bytes in', Buffer.from(`ab${TOKEN}`).toString('base64url')],
    ['hex of its bytes', Buffer.from(TOKEN).toString('hex')],
    ['percent-encoded', encodeURIComponent(`?t=${TOKEN}`)],
  ])('leaves no decodable token %s', (_, text) => {
    const out = scrub(text);
    expect(out).toContain(REDACTED);
    // What is left decodes to no copy of the token in any of those forms.
    for (const decoded of [
      out,
      Buffer.from(out.replace(/^.*Basic /, ''), 'base64').toString('latin1'),
      Buffer.from(out, 'base64url').toString('latin1'),
      Buffer.from(out, 'hex').toString('latin1'),
      decodeURIComponent(out.replace(/%(?![0-9A-F]{2})/g, '')),
    ])
      expect(decoded).not.toContain(TOKEN);
  });

  it('finds a secret spelled with JSON \\u escapes (alone or beside a plain copy), and leaves other escaped JSON byte for byte', () => {
    const escaped = [...TOKEN].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
    for (const body of [
      `{"errors":[{"message":"bad token ${escaped}"}]}`,
      `{"a":"${TOKEN}","b":"${escaped}"}`,
    ]) {
      const out = scrub(body);
      expect(JSON.stringify(JSON.parse(out))).not.toContain(TOKEN);
      expect(out).toContain(REDACTED);
    }
    const harmless = '{"name":"caf\\u00e9",  "n": 1}';
    expect(scrub(harmless)).toBe(harmless);
  });

  it('finds a secret JSON escapes inside JSON text, and a hex secret in either case and as raw bytes', () => {
    const event = JSON.stringify({ message: `key=${QUOTED}` });
    expect(JSON.parse(scrub(event)).message).toBe(`key=${REDACTED}`);
    expect(scrub(HEX.toUpperCase())).toBe(REDACTED);
    expect(scrub(Buffer.from(HEX, 'hex').toString('base64'))).toBe(REDACTED);
  });

  it('leaves text without a secret as it was', () => {
    const text = JSON.stringify({ ok: true, id: 'b'.repeat(40) });
    expect(scrub(text)).toBe(text);
  });
});

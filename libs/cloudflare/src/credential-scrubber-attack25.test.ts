import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDACTED, credentialScrubber } from './credential.ts';
import type { CloudflareCredential } from './credential.ts';
import type { R2Credentials } from './r2.client.ts';
import { startRangedR2 } from './test-support/ranged-r2.ts';

/**
 * attack25: the token's UTF-16 (LE and BE) in Base64, scrubbed since attack24 (`secretForms`):
 * at every offset of the text around it, in both alphabets, with and without padding, after a
 * BOM, and through R2 range reads whose window cuts the encoded text. Line breaks inside Base64
 * are a documented limit and are not tried. Each test asserts the secure behaviour (the token
 * does not come back), so it FAILS on a bug; tests named HELD passed when written.
 */
const TOKEN = 'Zx9_Qw7-Lm3Np5Rt2Vy8Bc4Df6Gh1Jk0As9Ed7Fk';
const credential: CloudflareCredential = { type: 'api_token', apiToken: TOKEN };
const scrub = (text: string) => credentialScrubber(credential)(Buffer.from(text, 'utf8')).toString('utf8');

type Order = 'le' | 'be';
const utf16 = (s: string, order: Order) =>
  order === 'le' ? Buffer.from(s, 'utf16le') : Buffer.from(s, 'utf16le').swap16();
const alphabets = ['base64', 'base64url'] as const;

/** Whether `text` holds Base64 (either alphabet, any alignment) of most of the token as UTF-16. */
function spellsMost(text: string, order: Order): boolean {
  const core = utf16(TOKEN.slice(2, -2), order);
  for (const alphabet of alphabets)
    for (const shift of [0, 1, 2]) {
      const enc = Buffer.concat([Buffer.alloc(shift), core]).toString(alphabet);
      if (text.includes(enc.slice(4, -4))) return true;
    }
  return false;
}

describe('attack25 HELD: Base64 of the token as UTF-16 at every offset', () => {
  const prefixes = ['', 'a', 'ab', 'abc', '$t=', "$env:CF='", 'Authorization: Bearer '];
  for (const order of ['le', 'be'] as const)
    for (const alphabet of alphabets)
      it(`HELD: UTF-16${order.toUpperCase()} in ${alphabet}, after ${prefixes.length} prefixes, with a BOM, padded or not`, () => {
        for (const prefix of prefixes)
          for (const bom of [false, true])
            for (const suffix of ['', "'", '; exit'])
              for (const unpad of [false, true]) {
                const bytes = Buffer.concat([
                  bom ? utf16('\uFEFF', order) : Buffer.alloc(0),
                  utf16(`${prefix}${TOKEN}${suffix}`, order),
                ]);
                let encoded = bytes.toString(alphabet);
                if (unpad) encoded = encoded.replace(/=+$/, '');
                const what = `${JSON.stringify(prefix)} bom=${bom} ${JSON.stringify(suffix)} unpad=${unpad}`;
                // The reading itself finds the unscrubbed spelling.
                expect(spellsMost(encoded, order), what).toBe(true);
                const out = scrub(JSON.stringify({ cmd: encoded }));
                expect(out, what).toContain(REDACTED);
                expect(spellsMost(out, order), what).toBe(false);
              }
      });

  it('HELD: a PowerShell -EncodedCommand line (UTF-16LE Base64 of a script holding the token)', () => {
    const script = `Invoke-RestMethod -Headers @{Authorization="Bearer ${TOKEN}"} https://api.cloudflare.com/client/v4/user/tokens/verify`;
    const out = scrub(`powershell.exe -EncodedCommand ${Buffer.from(script, 'utf16le').toString('base64')}`);
    expect(out).toContain(REDACTED);
    expect(spellsMost(out, 'le')).toBe(false);
  });
});

const DERIVED = createHash('sha256').update(TOKEN).digest('hex');
const keys: R2Credentials = { accessKeyId: 'b'.repeat(32), secretAccessKey: DERIVED };
let object = Buffer.alloc(0);
let r2: Awaited<ReturnType<typeof startRangedR2>>;
beforeAll(async () => {
  r2 = await startRangedR2(() => object, credential, keys);
});
afterAll(() => r2.close());

describe('attack25 HELD: R2 range reads that cut the Base64 of the token as UTF-16', () => {
  for (const order of ['le', 'be'] as const)
    it(`HELD: UTF-16${order.toUpperCase()} Base64 in an object, ranges starting and ending around and inside it`, async () => {
      const filler = 'x'.repeat(5000);
      for (const lead of ['', 'a', 'ab']) {
        const encoded = utf16(`${lead}${TOKEN}`, order).toString('base64');
        object = Buffer.from(`{"pad":"${filler}","cmd":"${encoded}","tail":"${filler}"}`);
        expect(spellsMost(object.toString('utf8'), order)).toBe(true);
        const at = object.indexOf(encoded);
        const end = at + encoded.length - 1;
        const ranges = [
          undefined,
          `bytes=${at}-${end}`,
          ...[-3, -1, 1, 2, 3, 4, 5, 6, 7].map((d) => `bytes=${at + d}-${end + 8}`),
          ...[-8, -5, -4, -3, -1].map((d) => `bytes=${at - 8}-${end + d}`),
          `bytes=-${object.length - at - 2}`,
        ];
        for (const range of ranges) {
          const part = await r2.read(range);
          expect(spellsMost(part, order), `${JSON.stringify(lead)} ${range ?? 'whole'}`).toBe(false);
        }
      }
    });
});

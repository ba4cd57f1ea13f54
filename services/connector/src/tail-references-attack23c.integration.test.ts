import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NAMED_REFERENCES, hexReference, percentEscape, spellsSecret } from '@warden/testing';
import { startR2SecretTail } from './test-support/tailing-user.ts';

/**
 * attack23c: README "Tail events use the same scrubber" as API answers, which find a secret "with
 * any of its characters escaped, in any mix: … percent-escapes in either case, XML and HTML
 * character references". A Worker logs the API token and the R2 Secret Access Key vaulted on its
 * account (any 16-256 visible ASCII characters) in HTML / XML spellings; `tail.worker` over REST
 * with the fake's tail WebSocket. Only spellings that survive the tail's own JSON encoding
 * unchanged (no backslash) are used, so each character is escaped once. A test FAILS on a bug;
 * HELD passed when written.
 */
const SECRET = 'S3cr3t/R2+key=!(v1)_' + 'x'.repeat(40);

describe('attack23c tail events spelling secrets with character references', () => {
  let tail: Awaited<ReturnType<typeof startR2SecretTail>>;
  const tailed = (messages: Record<string, string>) => tail.tailed(messages);
  let token: string;
  beforeAll(async () => {
    tail = await startR2SecretTail('carol', SECRET);
    token = tail.token;
  });
  afterAll(async () => {
    await tail?.close();
  });
  const leaked = (got: Record<string, string>, secret: string) =>
    Object.entries(got)
      .filter(([, v]) => spellsSecret(v, secret))
      .map(([k, v]) => `${k}: ${v}`);

  it('redacts the token spelled with %XX and &#xXX; alternately, with numeric references of 10 digits, and without ";"', async () => {
    const got = await tailed({
      percentAndReferences: [...token].map((c, i) => (i % 2 ? hexReference(c) : percentEscape(c))).join(''),
      tenDigits: [...token].map((c) => `&#${String(c.charCodeAt(0)).padStart(10, '0')};`).join(''),
      noSemicolon: [...token].map((c) => `&#${c.charCodeAt(0)}`).join(''),
    });
    expect(leaked(got, token)).toEqual([]);
  });

  it('redacts the vaulted R2 secret with / + = ! ( ) _ as HTML named references (&sol; &plus; &equals; &excl; &lpar; &rpar; &lowbar;)', async () => {
    const named = Object.fromEntries(Object.entries(NAMED_REFERENCES).map(([k, v]) => [v, `&${k};`]));
    const got = await tailed({
      htmlNamed: SECRET.replace(/[/+=!()_]/g, (c) => named[c]!),
    });
    expect(leaked(got, SECRET)).toEqual([]);
  });

  it('HELD: redacts the token and the R2 secret spelled with references the finder reads (&#xXX;, &#NN;) and percent-escapes', async () => {
    const got = await tailed({
      tokenRefs: [...token].map(hexReference).join(''),
      tokenPct: [...token].map(percentEscape).join(''),
      secretRefs: [...SECRET].map((c) => `&#${c.charCodeAt(0)};`).join(''),
    });
    expect(got).toEqual({ tokenRefs: '[REDACTED]', tokenPct: '[REDACTED]', secretRefs: '[REDACTED]' });
  });
});

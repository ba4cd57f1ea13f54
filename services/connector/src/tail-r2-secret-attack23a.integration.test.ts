import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startR2SecretTail } from './test-support/tailing-user.ts';

/**
 * attack23a: a Worker logs the R2 Secret Access Key vaulted on its account (the connector takes
 * any 16-256 visible ASCII characters: `/`, `+`, `=`, `!`, `(`, `%` included), percent-encoded
 * in the spellings common encoders write. `tail.worker` events are scrubbed by
 * `credentialScrubber` given that secret (README: "in the same encodings as in API responses",
 * which are "percent-encoded in any spelling"). End to end over REST with the fake's tail
 * WebSocket. A test FAILS on a bug; HELD passed when written.
 */
const SECRET = 'S3cr3t/R2+key=!(v1)' + 'x'.repeat(40);
const upperHex = (s: string) =>
  [...Buffer.from(s)].map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`).join('');
const unpct = (s: string) => s.replace(/(%[0-9A-Fa-f]{2})+/g, (m) => decodeURIComponent(m));

describe('attack23a tail events holding a vaulted R2 secret, percent-encoded', () => {
  let tail: Awaited<ReturnType<typeof startR2SecretTail>>;
  const tailed = (messages: Record<string, string>) => tail.tailed(messages);

  beforeAll(async () => {
    tail = await startR2SecretTail('bob', SECRET);
  });
  afterAll(async () => {
    await tail?.close();
  });

  it('redacts the secret percent-encoded as lower-case hex, as a path segment (only "/" encoded), by URLSearchParams, and every byte %XX', async () => {
    const spelled = {
      lowerHex: encodeURIComponent(SECRET).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
      pathSegment: SECRET.replaceAll('/', '%2F'),
      searchParams: new URLSearchParams({ k: SECRET }).toString().slice(2),
      everyByte: upperHex(SECRET),
    };
    const got = await tailed(spelled);
    const leaked = Object.entries(got)
      .filter(([, v]) => unpct(v).includes(SECRET))
      .map(([k, v]) => `${k}: ${v}`);
    expect(leaked).toEqual([]);
  });

  it('HELD: redacts the secret as is and as encodeURIComponent writes it', async () => {
    const got = await tailed({ raw: SECRET, encoded: encodeURIComponent(SECRET) });
    expect(got).toEqual({ raw: '[REDACTED]', encoded: '[REDACTED]' });
  });
});

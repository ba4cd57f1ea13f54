import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDACTED } from './credential.ts';
import type { CloudflareCredential } from './credential.ts';
import type { R2Credentials } from './r2.client.ts';
import { startRangedR2 } from './test-support/ranged-r2.ts';

/**
 * attack23g: the R2 note of README ("a range read keeps a margin on each side of 108 bytes per
 * byte of the longest secret … so a secret it cuts through is found whole"). The margin is wide
 * enough for the longest spelling, but what an escape means also depends on what comes before
 * the secret's spelling: a backslash is an escape only after an even run of backslashes. A range
 * whose widened start falls inside a long run of backslashes (escaped backslashes: content, not
 * part of the secret's spelling) reads that run with the other parity, so the secret's first
 * `\u` escape is read as an escaped backslash and `u005A`, and the secret is not found. Each test
 * asserts the secure behaviour, so it FAILS on a bug; tests named HELD passed when written.
 */
const TOKEN = 'Zx9_Qw7-Lm3Np5Rt2Vy8Bc4Df6Gh1Jk0As9Ef7Fk';
const credential: CloudflareCredential = { type: 'api_token', apiToken: TOKEN };
const DERIVED = createHash('sha256').update(TOKEN).digest('hex');
const keys: R2Credentials = { accessKeyId: 'b'.repeat(32), secretAccessKey: DERIVED };

const u = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
/** The token with every character `\u`-escaped, as a JSON writer escaping everything spells it. */
const SPELLED = [...TOKEN].map(u).join('');

/** An object: a JSON string value of 20 000 backslashes (10 000 escaped), then the token escaped. */
const RUN = 20_000;
const OBJECT = Buffer.from(`{"log":"${'\\'.repeat(RUN)}${SPELLED}","n":1}`);
/** Where the token's spelling starts in the object. */
const AT = OBJECT.indexOf(SPELLED);

let r2: Awaited<ReturnType<typeof startRangedR2>>;
beforeAll(async () => {
  r2 = await startRangedR2(() => OBJECT, credential, keys);
});
afterAll(() => r2.close());
const read = (range?: string) => r2.read(range);

describe('attack23g a range read whose margin starts inside a run of backslashes', () => {
  it('HELD: the whole object is scrubbed (the run read from its start: the token is found)', async () => {
    const whole = await read();
    expect(whole).toContain(REDACTED);
    expect(whole).not.toContain(SPELLED);
  });

  it('HELD: a range starting at the first byte of the spelling is scrubbed (the margin, even, keeps the parity)', async () => {
    const part = await read(`bytes=${AT}-${AT + SPELLED.length - 1}`);
    expect(part).toBe(REDACTED);
  });

  it('keeps the token out of a range starting one byte before its spelling (the margin then starts an odd number of backslashes before it: `\\u005A` is read as `\\\\` and `u005A`)', async () => {
    const part = await read(`bytes=${AT - 1}-${AT + SPELLED.length - 1}`);
    expect(part, part.slice(0, 80)).not.toContain(SPELLED);
  });

  it('keeps the token out of a range starting one byte into its spelling (`u005A\\u0078…`: everything but the backslash the agent already knows)', async () => {
    const part = await read(`bytes=${AT + 1}-${AT + SPELLED.length - 1}`);
    expect(part, part.slice(0, 80)).not.toContain(SPELLED.slice(1));
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { freePort } from './test-support/free-port.ts';
import { executeOverHttp } from './test-support/http-execute.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';
import { createTailingUser } from './test-support/tailing-user.ts';

/**
 * attack23e: README "Tail events use the same scrubber" as API answers, which find a secret "as
 * is, …, UTF-16, …". A Worker logs the API token and the R2 Secret Access Key vaulted on its
 * account as UTF-16 strings (a character and a NUL): the tail's JSON carries each NUL as
 * `\u0000`, the scrubber looks for UTF-16 only in the raw message, and Warden's JSON.parse of the
 * scrubbed event gives the agent the UTF-16 spelling. `tail.worker` over REST with the fake's
 * tail WebSocket. A test FAILS on a bug; HELD passed when written.
 */
const SECRET = 'S3cr3t/R2+key=!(v1)_' + 'x'.repeat(40);
/** `secret` as UTF-16LE (or BE) read as single bytes: a NUL after (or before) each character. */
const wide = (secret: string, order: 'le' | 'be') =>
  [...secret].map((c) => (order === 'le' ? `${c}\u0000` : `\u0000${c}`)).join('');
const narrow = (text: string) => text.replaceAll('\u0000', '');

describe('attack23e tail events holding secrets as UTF-16', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let base: string;
  let apiKey: string;
  let accountId: string;
  let token: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH, tailIntervalMs: 20 });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: base });
    await t.app.listen({ host: '127.0.0.1', port });
    ({ apiKey } = await t.createTenant('Tail UTF-16'));
    const user = createTailingUser(cf, {
      email: 'dave@example.com',
      accountName: 'Dave Co',
      scripts: ['wide'],
    });
    accountId = user.accountId;
    token = user.token;
    const connectedId = await t.connect(apiKey, 'dave', user.token);
    t.secrets.add(SECRET);
    const set = await fetch(`${base}/api/v1/connected_accounts/${connectedId}/r2_access_key`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ access_key_id: 'd'.repeat(32), secret_access_key: SECRET }),
    });
    expect(set.status).toBe(200);
  });
  afterAll(async () => {
    await t?.close();
    await cf?.close();
  });

  async function tailed(messages: Record<string, string>): Promise<Record<string, string>> {
    cf.tails.script(accountId, 'wide', [{ outcome: 'ok', logs: [{ message: [messages] }] }]);
    const res = await executeOverHttp(
      { base, apiKey, identifier: 'dave' },
      `async () => (await tail.worker({ script: 'wide', seconds: 1 })).events`,
      { expectStatus: 200 },
    );
    expect(res.body.error).toBeUndefined();
    const events = res.body.data as Array<{ logs: Array<{ message: Array<Record<string, string>> }> }>;
    return events[0]!.logs[0]!.message[0]!;
  }

  it('redacts the token and the vaulted R2 secret logged as UTF-16 (LE and BE): the event the agent gets holds neither', async () => {
    const got = await tailed({
      tokenLe: wide(token, 'le'),
      tokenBe: wide(token, 'be'),
      secretLe: wide(SECRET, 'le'),
    });
    const leaked = Object.entries(got)
      .filter(([, v]) => narrow(v).includes(token) || narrow(v).includes(SECRET))
      .map(([k, v]) => `${k}: ${JSON.stringify(v)}`);
    expect(leaked).toEqual([]);
  });

  it('HELD: redacts the token and the R2 secret logged as they are, beside UTF-16 text that holds neither', async () => {
    const got = await tailed({ token, secret: SECRET, other: wide('hello world', 'le') });
    expect(got).toEqual({ token: '[REDACTED]', secret: '[REDACTED]', other: wide('hello world', 'le') });
  });
});

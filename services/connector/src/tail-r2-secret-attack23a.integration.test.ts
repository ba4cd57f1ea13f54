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
  let cf: FakeCloudflare;
  let t: TestApp;
  let base: string;
  let apiKey: string;
  let accountId: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH, tailIntervalMs: 20 });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: base });
    await t.app.listen({ host: '127.0.0.1', port });
    ({ apiKey } = await t.createTenant('Tail R2 secret'));
    const user = createTailingUser(cf, {
      email: 'bob@example.com',
      accountName: 'Bob Co',
      scripts: ['leaky'],
    });
    accountId = user.accountId;
    const connectedId = await t.connect(apiKey, 'bob', user.token);
    t.secrets.add(SECRET);
    const set = await fetch(`${base}/api/v1/connected_accounts/${connectedId}/r2_access_key`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ access_key_id: 'b'.repeat(32), secret_access_key: SECRET }),
    });
    expect(set.status).toBe(200);
  });
  afterAll(async () => {
    await t?.close();
    await cf?.close();
  });

  async function tailed(messages: Record<string, string>): Promise<Record<string, string>> {
    cf.tails.script(accountId, 'leaky', [{ outcome: 'ok', logs: [{ message: [messages] }] }]);
    const res = await executeOverHttp(
      { base, apiKey, identifier: 'bob' },
      `async () => (await tail.worker({ script: 'leaky', seconds: 1 })).events`,
      { expectStatus: 200 },
    );
    expect(res.body.error).toBeUndefined();
    const events = res.body.data as Array<{ logs: Array<{ message: Array<Record<string, string>> }> }>;
    return events[0]!.logs[0]!.message[0]!;
  }

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

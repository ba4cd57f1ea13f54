import { FAKE_CF_PERMISSION_GROUPS, startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { freePort } from './free-port.ts';
import { executeOverHttp } from './http-execute.ts';
import { SPEC_PATH } from './paths.ts';
import { startTestApp } from './test-app.ts';

/**
 * A Cloudflare user on the fake with one account holding the Workers `scripts` (default `api`)
 * and a token that may read and tail them: the world every tail test starts from. Scripting the
 * tail's events (`cf.tails.script`) and vaulting the token are left to the test.
 */
export function createTailingUser(
  cf: FakeCloudflare,
  options: { readonly email: string; readonly accountName: string; readonly scripts?: readonly string[] },
): { readonly userId: string; readonly accountId: string; readonly token: string } {
  const user = cf.state.createUser({ email: options.email });
  const accountId = cf.state.createAccount({ name: options.accountName, members: [user.id] }).id;
  for (const name of options.scripts ?? ['api'])
    cf.state.putWorkerScript({ accountId, name, content: 'export default {}' });
  const token = cf.state.createUserToken({
    userId: user.id,
    permissions: [
      'com.cloudflare.api.user.read',
      '#organization:read',
      ...FAKE_CF_PERMISSION_GROUPS['Workers Scripts Read']!,
    ],
  });
  return { userId: user.id, accountId, token: token.value };
}

/**
 * A tenant (`name`) whose `identifiers` all hold the token of one tailing user (its `api` script's
 * tail says `hello`): the victim of the cross-client attack tests. Returns the tenant's API key.
 */
export async function connectTailingVictim(
  cf: FakeCloudflare,
  app: {
    createTenant(name: string): Promise<{ apiKey: string }>;
    connect(apiKey: string, identifier: string, token: string): Promise<unknown>;
  },
  options: {
    readonly name: string;
    readonly email: string;
    readonly accountName: string;
    readonly identifiers: readonly string[];
  },
): Promise<{ readonly apiKey: string; readonly accountId: string; readonly token: string }> {
  const { apiKey } = await app.createTenant(options.name);
  const { accountId, token } = createTailingUser(cf, {
    email: options.email,
    accountName: options.accountName,
  });
  cf.tails.script(accountId, 'api', [{ outcome: 'ok', logs: [{ message: ['hello'] }] }]);
  for (const identifier of options.identifiers) await app.connect(apiKey, identifier, token);
  return { apiKey, accountId, token };
}

/**
 * Agent code that starts a 3 s tail of `api`, waits 700 ms so that it has, then sends GETs until
 * the budget refuses one, and only then waits for the tail: it spends whatever the budget lets
 * it spend while the tail runs. Resolves to `{sent, refused, deleted, tailId}`.
 */
export const SPEND_WHILE_TAILING = `async () => {
  const tailing = tail.worker({ script: 'api', seconds: 3 });
  const end = Date.now() + 700; while (Date.now() < end) {}
  let sent = 0;
  let refused = null;
  for (let i = 0; i < 40 && refused === null; i++) {
    try { await cloudflare.request({ method: 'GET', path: '/user' }); sent++; }
    catch (e) { refused = e.code; }
  }
  const tailed = await tailing;
  return { sent, refused, deleted: tailed.deleted, tailId: tailed.tailId };
}`;

/**
 * A listening Warden and a fake whose identifier `name` of tenant `name` holds a tailing user's
 * token and, as its R2 access key, `r2Secret`: the world of the tests of secrets in tail events.
 * `tailed(messages)` has the user's `leaky` Worker log the object `messages` during a one-second
 * `tail.worker` over REST and returns that object as the agent gets it.
 */
export async function startR2SecretTail(name: string, r2Secret: string) {
  const cf = await startFakeCloudflare({ specPath: SPEC_PATH, tailIntervalMs: 20 });
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: base });
  await t.app.listen({ host: '127.0.0.1', port });
  const { apiKey } = await t.createTenant(name);
  const user = createTailingUser(cf, {
    email: `${name}@example.com`,
    accountName: `${name} Co`,
    scripts: ['leaky'],
  });
  const connectedId = await t.connect(apiKey, name, user.token);
  t.secrets.add(r2Secret);
  const set = await fetch(`${base}/api/v1/connected_accounts/${connectedId}/r2_access_key`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ access_key_id: 'b'.repeat(32), secret_access_key: r2Secret }),
  });
  if (set.status !== 200) throw new Error(`setting the R2 access key failed: ${set.status}`);
  return {
    t,
    token: user.token,
    async tailed(messages: Record<string, string>): Promise<Record<string, string>> {
      cf.tails.script(user.accountId, 'leaky', [{ outcome: 'ok', logs: [{ message: [messages] }] }]);
      const res = await executeOverHttp(
        { base, apiKey, identifier: name },
        `async () => (await tail.worker({ script: 'leaky', seconds: 1 })).events`,
        { expectStatus: 200 },
      );
      if (res.body.error) throw new Error(`the tail failed: ${JSON.stringify(res.body.error)}`);
      const events = res.body.data as Array<{ logs: Array<{ message: Array<Record<string, string>> }> }>;
      return events[0]!.logs[0]!.message[0]!;
    },
    async close() {
      await t.close();
      await cf.close();
    },
  };
}

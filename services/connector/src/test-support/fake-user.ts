import type { FakeCloudflare } from '@warden/testing';
import type { TestApp } from './test-app.ts';

/**
 * A Cloudflare user on the fake (with one account and a read token) vaulted for `identifier`
 * through the API: the identity most tests need before they can call a tool or mint a token.
 * Returns the connected account id and the Cloudflare token.
 */
export async function connectFakeUser(
  t: Pick<TestApp, 'connect'>,
  cf: FakeCloudflare,
  apiKey: string,
  identifier: string,
): Promise<{ accountId: string; token: string }> {
  const user = cf.state.createUser({ email: `${identifier.replace(/[^A-Za-z0-9]/g, '.')}@example.com` });
  cf.state.createAccount({ name: `${identifier} account`, members: [user.id] });
  const token = cf.state.createUserToken({
    userId: user.id,
    permissions: ['com.cloudflare.api.user.read', '#zone:read'],
  });
  return { accountId: await t.connect(apiKey, identifier, token.value), token: token.value };
}

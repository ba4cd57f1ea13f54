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

/**
 * A Cloudflare user on the fake named after `name` (`<name>@example.com`, lower case) with an
 * account (`<name> Co`) and a zone (`<name>.example`), and a way to vault a new token of it,
 * with `permissions`, for an identifier of a tenant.
 */
export function fakeZoneUser(cf: FakeCloudflare, name: string) {
  const slug = name.toLowerCase().replace(/\W+/g, '-');
  const user = cf.state.createUser({ email: `${slug}@example.com` });
  const account = cf.state.createAccount({ name: `${name} Co`, members: [user.id] });
  const zoneId = cf.state.createZone({ accountId: account.id, name: `${slug}.example` }).id;
  return {
    userId: user.id,
    accountId: account.id,
    zoneId,
    async connect(
      t: Pick<TestApp, 'connect'>,
      apiKey: string,
      identifier: string,
      permissions: readonly string[],
    ) {
      const token = cf.state.createUserToken({ userId: user.id, permissions: [...permissions] });
      return { token, id: await t.connect(apiKey, identifier, token.value) };
    },
  };
}

/** What a Warden tenant needs to read its own Cloudflare user: the token's base permissions. */
export const READ_PERMISSIONS = ['com.cloudflare.api.user.read', '#organization:read', '#zone:read'];

/**
 * A tenant named `name` whose identifier `name` holds a vaulted token of a fresh fake user (see
 * `fakeZoneUser`) with the read permissions and `permissions`: the set-up of most policy tests.
 */
export async function zoneTenant(
  t: Pick<TestApp, 'connect' | 'createTenant'>,
  cf: FakeCloudflare,
  name: string,
  permissions: readonly string[] = [],
) {
  const user = fakeZoneUser(cf, name);
  const tokenPermissions = [...READ_PERMISSIONS, ...permissions];
  const tenant = await t.createTenant(name);
  const { token } = await user.connect(t, tenant.apiKey, name, tokenPermissions);
  return {
    ...tenant,
    userId: user.userId,
    accountId: user.accountId,
    zoneId: user.zoneId,
    token,
    tokenPermissions,
    auth: { authorization: `Bearer ${tenant.apiKey}` },
  };
}

/** A tenant admin's two steps in the credential-guard tests: its policy, and offboarding. */
export function tenantAdmin(t: Pick<TestApp, 'app'>) {
  return {
    async setPolicy(auth: Record<string, string>, payload: Record<string, unknown>): Promise<void> {
      const put = await t.app.inject({ method: 'PUT', url: '/api/v1/policy', headers: auth, payload });
      if (put.statusCode !== 200) throw new Error(`PUT /api/v1/policy: ${put.statusCode} ${put.body}`);
    },
    /** `POST …/offboard` with `revoke_upstream: true`. */
    offboard: (auth: Record<string, string>, identifier: string) =>
      t.app.inject({
        method: 'POST',
        url: `/api/v1/identities/${identifier}/offboard`,
        headers: auth,
        payload: { revoke_upstream: true },
      }),
  };
}

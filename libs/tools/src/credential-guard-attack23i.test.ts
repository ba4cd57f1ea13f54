import { describe, expect, it } from 'vitest';
import { canonicalizePath } from './canonical-path.ts';
import { changesOwnAccess } from './credential-guard.ts';
import { isWrite } from './policy.ts';
import type { Policy } from './policy.ts';
import { decide } from './test-support/credential-views.ts';

/**
 * attack23i: the own-access rule (`changesOwnAccess`, applied by the gateway whatever the policy):
 * other routes of Cloudflare's API document that remove the vaulted user's access to an account.
 * Each test asserts the SECURE behaviour, so it FAILS on a bug; tests named HELD passed when written.
 */
const TOKEN_ID = 'f267e341f3dd4697bd3b9f71dd96247f';
const ACCOUNT = '023e105f4ecef8ad9ca31a8372d0c353';

/** Whether an agent's request gets through, the tenant policy being `tenant` (own-access rule first). */
const goesThrough = (method: string, path: string, tenant: Policy = {}) => {
  let canonical: string;
  try {
    canonical = canonicalizePath(path);
  } catch {
    return false; // refused as a path
  }
  if (isWrite({ method, path: canonical }) && changesOwnAccess(canonical, TOKEN_ID)) return false;
  return decide(method, canonical, tenant).allowed;
};

describe('attack23i the own-access rule and routes that leave an account', () => {
  it('refuses DELETE /user/organizations/{account_id} ("Leave Organization: Removes association to an organization"), the user-level spelling of leaving the account, under the default policy', () => {
    expect(goesThrough('DELETE', `/user/organizations/${ACCOUNT}`)).toBe(false);
  });

  it('refuses DELETE /user/organizations/{account_id} even when a policy allows every write', () => {
    const open = {
      deny_writes_by_default: true,
      rules: [{ effect: 'allow' as const, methods: ['*' as const], path: '/**' }],
    };
    expect(
      goesThrough(
        'DELETE',
        `/User/Organizations/%${ACCOUNT.charCodeAt(0).toString(16)}${ACCOUNT.slice(1)}`,
        open,
      ),
    ).toBe(false);
  });

  it('HELD every spelling of the vaulted token, memberships and members is refused, whatever the policy', () => {
    const open = {
      rules: [{ effect: 'allow' as const, methods: ['*' as const], path: '/**' }],
      credential_operations: { allow: ['api_tokens' as const, 'account_members' as const] },
    };
    for (const [method, path] of [
      ['DELETE', `/user/tokens/${TOKEN_ID.toUpperCase()}`],
      ['PUT', `/user/tokens/${TOKEN_ID}/value`],
      ['PUT', `/accounts/${ACCOUNT}/tokens/${TOKEN_ID}`],
      ['DELETE', `/user//tokens/%66${TOKEN_ID.slice(1)}`],
      ['DELETE', `/MEMBERSHIPS/abc`],
      ['PUT', `/memberships/abc`],
      ['DELETE', `/accounts/${ACCOUNT}/Members/m1`],
      ['PATCH', `/accounts/${ACCOUNT}/members/m1/`],
      ['DELETE', `/accounts/${ACCOUNT}/%6Dembers/m1`],
    ] as const) {
      expect(goesThrough(method, path, open), `${method} ${path}`).toBe(false);
    }
  });
});

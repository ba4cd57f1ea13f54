import { randomBytes } from 'node:crypto';
import { FAKE_CF_PERMISSION_GROUPS } from '@warden/testing';
import type { FakeCloudflare, FakeR2 } from '@warden/testing';

/**
 * A Cloudflare user (named after `name`) whose account has an R2 bucket `media`, and a token of
 * theirs that reads the user, the account's zones and writes R2; `list` is agent code listing it.
 */
export function r2User(cf: FakeCloudflare, r2: FakeR2, name: string) {
  const user = cf.state.createUser({ email: `${name}-${randomBytes(4).toString('hex')}@example.com` });
  const account = cf.state.createAccount({ name: `${name} Co`, members: [user.id] });
  r2.createBucket(account.id, 'media');
  const token = cf.state.createUserToken({
    userId: user.id,
    permissions: [
      'com.cloudflare.api.user.read',
      '#organization:read',
      '#zone:read',
      ...(FAKE_CF_PERMISSION_GROUPS['Workers R2 Storage Write'] ?? []),
    ],
  });
  const list = `r2.list({ bucket: 'media', accountId: '${account.id}' })`;
  return { account, token, list };
}

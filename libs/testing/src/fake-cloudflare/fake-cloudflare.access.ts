import { isUserPermission, satisfies } from './fake-cloudflare.permissions.ts';
import type {
  AccountRecord,
  FakeCloudflareState,
  PolicyRecord,
  TokenRecord,
  UserRecord,
  ZoneRecord,
} from './fake-cloudflare.state.ts';

export type FakePrincipalKind = 'user_token' | 'account_token' | 'global_api_key';

/** Who is calling, once the credential headers checked out. */
export type Principal =
  | { readonly kind: 'user_token'; readonly user: UserRecord; readonly token: TokenRecord }
  | { readonly kind: 'account_token'; readonly account: AccountRecord; readonly token: TokenRecord }
  | { readonly kind: 'global_api_key'; readonly user: UserRecord };

/** The user id for user tokens and the Global API Key, the account id for account-owned tokens. */
export function principalId(principal: Principal): string {
  return principal.kind === 'account_token' ? principal.account.id : principal.user.id;
}

/** Cloudflare's budget is per user (all tokens and the key together); account-owned tokens count per account. */
export function budgetKey(principal: Principal): string {
  return principal.kind === 'account_token' ? `account:${principal.account.id}` : `user:${principal.user.id}`;
}

/** Whether the credential's owner reaches the account at all (membership, or the token's own account). */
export function ownerReachesAccount(principal: Principal, account: AccountRecord): boolean {
  if (principal.kind === 'account_token') return principal.account.id === account.id;
  return account.members.has(principal.user.id);
}

export function ownerReachesZone(
  state: FakeCloudflareState,
  principal: Principal,
  zone: ZoneRecord,
): boolean {
  const account = state.accounts.get(zone.accountId);
  return account !== undefined && ownerReachesAccount(principal, account);
}

function policies(principal: Principal): readonly PolicyRecord[] {
  return principal.kind === 'global_api_key' ? [] : principal.token.policies;
}

function policyCoversAccount(policy: PolicyRecord, account: AccountRecord): boolean {
  return policy.allResources || policy.accounts.has(account.id);
}

function policyCoversZone(policy: PolicyRecord, zone: ZoneRecord): boolean {
  return policy.allResources || policy.accounts.has(zone.accountId) || policy.zones.has(zone.id);
}

export function canOnAccount(
  principal: Principal,
  account: AccountRecord,
  required: readonly string[],
): boolean {
  if (!ownerReachesAccount(principal, account)) return false;
  if (principal.kind === 'global_api_key') return true;
  return policies(principal).some((p) => policyCoversAccount(p, account) && satisfies(p.granted, required));
}

export function canOnZone(
  state: FakeCloudflareState,
  principal: Principal,
  zone: ZoneRecord,
  required: readonly string[],
): boolean {
  if (!ownerReachesZone(state, principal, zone)) return false;
  if (principal.kind === 'global_api_key') return true;
  return policies(principal).some((p) => policyCoversZone(p, zone) && satisfies(p.granted, required));
}

/** Any non-user permission on the account or one of its zones: what lists it in `GET /accounts`. */
export function seesAccount(
  state: FakeCloudflareState,
  principal: Principal,
  account: AccountRecord,
): boolean {
  if (!ownerReachesAccount(principal, account)) return false;
  if (principal.kind === 'global_api_key') return true;
  return policies(principal).some((p) => {
    if (!p.permissions.some((perm) => !isUserPermission(perm))) return false;
    if (policyCoversAccount(p, account)) return true;
    for (const zoneId of p.zones) if (state.zones.get(zoneId)?.accountId === account.id) return true;
    return false;
  });
}

/**
 * User-level keys (user details, API tokens) apply to the token's owner whatever accounts or
 * zones the policy names; account-owned tokens have no user.
 */
export function canOnUser(principal: Principal, required: readonly string[]): boolean {
  if (principal.kind === 'global_api_key') return true;
  if (principal.kind === 'account_token') return false;
  return principal.token.policies.some((p) => satisfies(p.granted, required));
}

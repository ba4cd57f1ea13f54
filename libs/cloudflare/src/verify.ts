import { WardenError } from '@warden/core';
import type { CloudflareClient, CloudflareResponse } from './cloudflare.client.ts';
import type { CloudflareAccount, CloudflareCredential, VerifiedCredential } from './credential.ts';

const MAX_ACCOUNT_PAGES = 20;

function reason(response: CloudflareResponse): string {
  const first = response.errors[0];
  if (!first) return `HTTP ${response.status}`;
  return first.code !== undefined ? `${first.message} (code ${first.code})` : first.message;
}

/**
 * 5xx, 429 and transport failures are Cloudflare's problem, not the credential's: nothing is
 * stored. A 429 is `rate_limited` with the response's `retryAfterSeconds` (Cloudflare's
 * `Retry-After`; Warden's client through the gateway names the wait its rate budget blocks the
 * user for): the credential's user is at Cloudflare's limit, and connecting it again before
 * then would only meet the same answer.
 */
function assertReachable(response: CloudflareResponse, step: string): void {
  if (response.status === 429) {
    const wait = response.retryAfterSeconds;
    throw new WardenError(
      'rate_limited',
      `Cloudflare rate-limited the user of this credential while Warden verified it (${step}, ${reason(response)}); ${wait !== null ? `retry after ${wait} s` : 'retry later'}. Verifying sends one or two requests that count against the user's Cloudflare limit`,
      { upstreamStatus: 429, ...(wait !== null ? { retryAfterSeconds: wait } : {}) },
    );
  }
  if (response.status >= 500) {
    throw new WardenError(
      'upstream_error',
      `Cloudflare answered ${response.status} to ${step}; retry shortly`,
      {
        upstreamStatus: response.status,
      },
    );
  }
}

function refused(field: string, response: CloudflareResponse): WardenError {
  return new WardenError('invalid_credential', `Cloudflare refused the credential: ${reason(response)}`, {
    field,
  });
}

function inactive(field: string, status: string): WardenError {
  return new WardenError(
    'invalid_credential',
    `Cloudflare reports the token as ${status}; only active tokens can be connected`,
    {
      field,
      tokenStatus: status,
    },
  );
}

function parseDate(value: unknown): Date | null {
  if (typeof value !== 'string') return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

async function listAccounts(
  client: CloudflareClient,
  credential: CloudflareCredential,
): Promise<CloudflareResponse & { accounts: CloudflareAccount[] }> {
  const accounts: CloudflareAccount[] = [];
  let last!: CloudflareResponse;
  for (let page = 1; page <= MAX_ACCOUNT_PAGES; page++) {
    last = await client.send(credential, { method: 'GET', path: '/accounts', query: { page, per_page: 50 } });
    assertReachable(last, 'GET /accounts');
    if (!last.success || !Array.isArray(last.result)) break;
    for (const a of last.result as Array<Record<string, unknown>>) {
      if (typeof a.id === 'string')
        accounts.push({ id: a.id, name: typeof a.name === 'string' ? a.name : a.id });
    }
    const info = last.resultInfo as { total_pages?: number } | undefined;
    if (!info?.total_pages || page >= info.total_pages) break;
  }
  return { ...last, accounts };
}

async function verifyUserToken(
  client: CloudflareClient,
  credential: CloudflareCredential,
  verify: CloudflareResponse,
): Promise<VerifiedCredential> {
  const result = verify.result as { id?: string; status?: string; expires_on?: string } | null;
  const status = result?.status ?? 'unknown';
  if (status !== 'active') throw inactive('authorization.api_token', status);
  const user = await client.send(credential, { method: 'GET', path: '/user' });
  assertReachable(user, 'GET /user');
  const { accounts } = await listAccounts(client, credential);
  const userId = user.success ? ((user.result as { id?: string } | null)?.id ?? null) : null;
  return {
    tokenKind: 'user',
    userId,
    accounts,
    tokenId: result?.id ?? null,
    tokenStatus: status,
    expiresOn: parseDate(result?.expires_on),
  };
}

/** An account-owned token fails `/user/tokens/verify`; find its account and verify it there. */
async function verifyAccountToken(
  client: CloudflareClient,
  credential: CloudflareCredential,
  userVerify: CloudflareResponse,
): Promise<VerifiedCredential> {
  const listed = await listAccounts(client, credential);
  for (const account of listed.accounts) {
    const verify = await client.send(credential, {
      method: 'GET',
      path: `/accounts/${encodeURIComponent(account.id)}/tokens/verify`,
    });
    assertReachable(verify, 'GET /accounts/{account_id}/tokens/verify');
    if (!verify.success) continue;
    const result = verify.result as { id?: string; status?: string; expires_on?: string } | null;
    const status = result?.status ?? 'unknown';
    if (status !== 'active') throw inactive('authorization.api_token', status);
    return {
      tokenKind: 'account',
      userId: null,
      accounts: [account],
      tokenId: result?.id ?? null,
      tokenStatus: status,
      expiresOn: parseDate(result?.expires_on),
    };
  }
  throw refused('authorization.api_token', userVerify);
}

/**
 * Verifies a credential against Cloudflare before anything is stored:
 * user tokens via `/user/tokens/verify` + `/user`; account-owned tokens via
 * `/accounts` + `/accounts/{id}/tokens/verify`; a Global API Key via `/user`.
 */
export async function verifyCredential(
  client: CloudflareClient,
  credential: CloudflareCredential,
): Promise<VerifiedCredential> {
  if (credential.type === 'global_api_key') {
    const user = await client.send(credential, { method: 'GET', path: '/user' });
    assertReachable(user, 'GET /user');
    if (!user.success) throw refused('authorization.api_key', user);
    const { accounts } = await listAccounts(client, credential);
    return {
      tokenKind: 'user',
      userId: (user.result as { id?: string } | null)?.id ?? null,
      accounts,
      tokenId: null,
      tokenStatus: 'active',
      expiresOn: null,
    };
  }
  const verify = await client.send(credential, { method: 'GET', path: '/user/tokens/verify' });
  assertReachable(verify, 'GET /user/tokens/verify');
  if (verify.success) return verifyUserToken(client, credential, verify);
  if (verify.status === 401 || verify.status === 403) return verifyAccountToken(client, credential, verify);
  throw refused('authorization.api_token', verify);
}

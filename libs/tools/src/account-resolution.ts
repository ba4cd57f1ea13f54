import { WardenError } from '@warden/core';
import type { ConnectedAccount, ConnectedAccountService, OpenableAccount } from '@warden/vault';
import { MAX_OPENABLE_ACCOUNTS, validateIdentifier } from '@warden/vault';
import { cloudflarePrincipal } from '@warden/ratelimit';
import type { ToolCaller } from './tool-caller.ts';

/**
 * The connections a call may use: those it asked for, within an MCP token's limit; null = any.
 * The one rule both account lookups below apply.
 */
function allowedConnections(caller: ToolCaller, wanted: readonly string[] | null): readonly string[] | null {
  const limit = caller.connectionNames ?? null;
  if (wanted && limit) return wanted.filter((name) => limit.includes(name));
  return wanted ?? limit;
}

/** The ACTIVE connected accounts an identifier may use now, honouring an MCP token's connection limit. */
export async function activeAccounts(
  accounts: Pick<ConnectedAccountService, 'list'>,
  caller: ToolCaller,
  identifier: string,
  connectionNames: readonly string[] | null,
): Promise<ConnectedAccount[]> {
  validateIdentifier(identifier);
  const all: ConnectedAccount[] = [];
  let pageToken: string | undefined;
  do {
    const page = await accounts.list(caller.tenantId, {
      identifier,
      status: 'ACTIVE',
      pageSize: 100,
      ...(pageToken ? { pageToken } : {}),
    });
    all.push(...page.items);
    pageToken = page.nextPageToken ?? undefined;
  } while (pageToken);
  const allowed = allowedConnections(caller, connectionNames);
  return allowed === null ? all : all.filter((a) => allowed.includes(a.connectionName));
}

/**
 * Picks the account a tool call runs against, read with its sealed credential; every
 * ambiguity is the caller's to resolve.
 */
export async function resolveAccount(
  accounts: Pick<ConnectedAccountService, 'openable'>,
  caller: ToolCaller,
  input: { identifier: string; connectionName?: string; connectedAccountId?: string },
): Promise<OpenableAccount> {
  if (input.connectedAccountId !== undefined) {
    const [found] = await accounts.openable(caller.tenantId, { id: input.connectedAccountId });
    const account = found?.account;
    if (
      !found ||
      !account ||
      account.identifier !== input.identifier ||
      (caller.connectionNames != null && !caller.connectionNames.includes(account.connectionName))
    ) {
      throw new WardenError('not_found', 'connected account not found');
    }
    if (account.status !== 'ACTIVE') {
      throw new WardenError(
        'conflict',
        `connected account ${account.id} is ${account.status}; reconnect the credential`,
      );
    }
    return found;
  }
  validateIdentifier(input.identifier);
  const candidates = await accounts.openable(caller.tenantId, {
    identifier: input.identifier,
    connectionNames: allowedConnections(caller, input.connectionName ? [input.connectionName] : null),
  });
  if (candidates.length === 0) {
    throw new WardenError(
      'not_found',
      `no ACTIVE connected account for identifier '${input.identifier}'${input.connectionName ? ` on connection '${input.connectionName}'` : ''}; connect one with POST /api/v1/connected_accounts`,
      { field: 'identifier' },
    );
  }
  if (candidates.length > 1) {
    const more = candidates.length >= MAX_OPENABLE_ACCOUNTS ? ' (and more)' : '';
    throw new WardenError(
      'conflict',
      `identifier '${input.identifier}' has ${candidates.length}${more} ACTIVE connected accounts; pass connected_account_id, one of: ${candidates
        .map(({ account }) => `${account.id} (${account.connectionName})`)
        .join(', ')}`,
      { field: 'connected_account_id' },
    );
  }
  return candidates[0] as OpenableAccount;
}

/**
 * The Cloudflare account an execution is bound to. Account-owned tokens have theirs
 * fixed; a user token reaching several accounts needs `account_id`.
 */
export function resolveCloudflareAccount(
  account: ConnectedAccount,
  requested: string | undefined,
): string | undefined {
  const available = account.cloudflare.accounts;
  const listing = available.map((a) => `${a.id} (${a.name})`).join(', ');
  if (requested !== undefined) {
    if (!available.some((a) => a.id === requested)) {
      throw new WardenError(
        'invalid_request',
        `params.account_id: this credential cannot reach account ${requested}; it can reach: ${listing || 'no accounts'}`,
        { field: 'params.account_id' },
      );
    }
    return requested;
  }
  if (available.length <= 1) return available[0]?.id;
  throw new WardenError(
    'invalid_request',
    `params.account_id: this credential reaches ${available.length} accounts; choose one of: ${listing}`,
    { field: 'params.account_id', accounts: available.map((a) => ({ id: a.id, name: a.name })) },
  );
}

/** The principal Cloudflare counts requests against: the user, or the account for account-owned tokens. */
export function upstreamPrincipal(account: ConnectedAccount): string {
  const { userId, tokenId, accounts } = account.cloudflare;
  // Facts that name no one (nothing a verification stores) fall back to the account's own id.
  return (
    cloudflarePrincipal({ tokenKind: account.tokenKind, userId, tokenId, accounts }) ??
    `cf:${account.tokenKind === 'account' ? 'account' : 'token'}:${account.id}`
  );
}

import { WardenError } from '@warden/core';
import type { ConnectedAccount, ConnectedAccountService } from '@warden/vault';
import { validateIdentifier } from '@warden/vault';
import { activeAccounts } from './account-resolution.ts';
import { describePolicy } from './policy.ts';
import type { Policy } from './policy.ts';
import type { PolicyStore } from './policy.store.ts';
import type { ToolDefinition, ToolDefinitionSource } from './ports.ts';
import type { ToolCaller } from './tool-caller.ts';

export interface ScopedTool {
  readonly connectionName: string;
  readonly connectedAccountId: string;
  readonly definition: ToolDefinition;
}

function accountsNote(account: ConnectedAccount): string {
  const accounts = account.cloudflare.accounts;
  if (account.tokenKind === 'account' || accounts.length === 1) {
    return `Cloudflare account: ${accounts[0]?.name ?? 'unknown'} (${accounts[0]?.id ?? '-'}); \`accountId\` is set to it.`;
  }
  if (accounts.length === 0) return 'This credential reaches no account; user-level endpoints only.';
  return `This credential reaches ${accounts.length} accounts; pass account_id, one of: ${accounts.map((a) => `${a.id} (${a.name})`).join(', ')}.`;
}

/**
 * Tool definitions for one connected account: the engine's descriptions plus this
 * identity's policy and accounts, so an agent knows its limits before it tries.
 */
export function definitionsFor(
  source: ToolDefinitionSource,
  account: ConnectedAccount,
  policy: { tenant: Policy; identity: Policy },
): readonly ToolDefinition[] {
  const summary = describePolicy(policy.tenant, policy.identity);
  const readOnly = Boolean(policy.tenant.read_only || policy.identity.read_only);
  return source
    .definitions({ readOnly, policySummary: summary })
    .map((def) =>
      def.name === 'cloudflare_execute'
        ? { ...def, description: `${def.description}\n\n${accountsNote(account)}` }
        : def,
    );
}

const MAX_PAGE_SIZE = 100;

export function createScopedToolsService(deps: {
  accounts: Pick<ConnectedAccountService, 'list'>;
  policies: Pick<PolicyStore, 'effective'>;
  definitions: ToolDefinitionSource;
}) {
  return {
    /** Only tools the identifier may use now: one pair per ACTIVE connected account. */
    async list(
      caller: ToolCaller,
      query: {
        identifier: string;
        connectionNames?: readonly string[];
        pageSize?: number;
        pageToken?: string;
      },
    ): Promise<{ tools: ScopedTool[]; nextPageToken: string | null }> {
      const pageSize = query.pageSize ?? 20;
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
        throw new WardenError('invalid_request', `page_size: must be an integer from 1 to ${MAX_PAGE_SIZE}`, {
          field: 'page_size',
        });
      }
      let offset = 0;
      if (query.pageToken !== undefined) {
        offset = Number.parseInt(Buffer.from(query.pageToken, 'base64url').toString('utf8'), 10);
        if (!Number.isInteger(offset) || offset < 0) {
          throw new WardenError(
            'invalid_request',
            'page_token: is not a token this API issued; pass next_page_token',
            {
              field: 'page_token',
            },
          );
        }
      }
      // An identifier no account could have (control characters, too long) is refused, naming it.
      validateIdentifier(query.identifier);
      const accounts = await activeAccounts(
        deps.accounts,
        caller,
        query.identifier,
        query.connectionNames ?? null,
      );
      const policy = await deps.policies.effective(caller.tenantId, query.identifier);
      const all: ScopedTool[] = accounts.flatMap((account) =>
        definitionsFor(deps.definitions, account, policy).map((definition) => ({
          connectionName: account.connectionName,
          connectedAccountId: account.id,
          definition,
        })),
      );
      const page = all.slice(offset, offset + pageSize);
      const next = offset + pageSize;
      return {
        tools: page,
        nextPageToken: next < all.length ? Buffer.from(String(next)).toString('base64url') : null,
      };
    },
  };
}

export type ScopedToolsService = ReturnType<typeof createScopedToolsService>;

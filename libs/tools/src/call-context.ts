import type { Clock } from '@warden/core';
import { systemClock } from '@warden/core';
import type { BudgetSpec } from '@warden/ratelimit';
import type { ConnectedAccountService, OpenableAccount } from '@warden/vault';
import { resolveAccount } from './account-resolution.ts';
import type { Policy } from './policy.ts';
import type { ToolCaller } from './tool-caller.ts';

/**
 * What a tool call needs before it can run: the account it runs against (read with its sealed
 * credential), the tenant's and identity's policy, and the tenant's effective settings.
 */
export interface CallContext {
  readonly account: OpenableAccount;
  readonly policy: { readonly tenant: Policy; readonly identity: Policy };
  readonly settings: TenantToolSettings;
  /** When it was read (epoch ms), to compare with the invalidation bus. */
  readonly readAt: number;
}

export interface TenantToolSettings {
  readonly budget: BudgetSpec;
  readonly retentionDays: number;
  /** Store the submitted code in the audit trail (its SHA-256 is always stored). */
  readonly captureCode: boolean;
  /**
   * The tenant API keys that may approve or reject write approvals; null: any key of the tenant
   * (never the one that planned the writes).
   */
  readonly approverApiKeyIds: readonly string[] | null;
}

export interface CallTarget {
  readonly identifier: string;
  readonly connectionName?: string;
  readonly connectedAccountId?: string;
}

/**
 * A change that must reach running calls and cached contexts on every replica before their
 * next upstream request. `revoked`: the account, identity or MCP token may not be used any
 * more. `changed`: it may, but something it depends on (credential, policy, settings) changed.
 * Unset fields match everything within the tenant.
 */
export interface Invalidation {
  readonly tenantId: string;
  readonly identifier?: string;
  readonly accountId?: string;
  readonly tokenId?: string;
  readonly reason: 'revoked' | 'changed';
}

export interface CallContextSourceDeps {
  readonly accounts: Pick<ConnectedAccountService, 'openable'>;
  /** The policies and effective settings of a tenant and identity, in one read. */
  readonly policyAndSettings: (
    tenantId: string,
    identifier: string,
  ) => Promise<{ policy: { tenant: Policy; identity: Policy }; settings: TenantToolSettings }>;
  /**
   * Since when every invalidation has reached this replica (epoch ms), or null while some may
   * be missed: a cached context is used only if it was read after this.
   */
  readonly trustedSince: () => number | null;
  /** How long a context may be served from memory (0 = never). */
  readonly ttlMs: number;
  readonly maxEntries?: number;
  readonly clock?: Clock;
}

interface Entry {
  readonly tenantId: string;
  readonly identifier: string;
  readonly context: CallContext;
}

export interface CallContextSource {
  /** The call's context, from memory when a fresh and trusted copy is there. */
  load(caller: ToolCaller, target: CallTarget, options?: { fresh?: boolean }): Promise<CallContext>;
  invalidate(change: Invalidation): void;
}

function keyOf(caller: ToolCaller, target: CallTarget): string {
  return JSON.stringify([
    caller.tenantId,
    target.identifier,
    target.connectionName ?? null,
    target.connectedAccountId ?? null,
    caller.connectionNames ?? null,
  ]);
}

/**
 * Reads call contexts, remembering them for a few seconds: on the hot path a tool call then
 * reads nothing from the database. Every change to what a context holds (revocation, rotation,
 * policy, settings) is published on the bus and drops the copies on every replica; while the
 * bus may have missed something, nothing cached is trusted.
 */
export function createCallContextSource(deps: CallContextSourceDeps): CallContextSource {
  const clock = deps.clock ?? systemClock;
  const maxEntries = deps.maxEntries ?? 10_000;
  const cache = new Map<string, Entry>();

  async function read(caller: ToolCaller, target: CallTarget): Promise<CallContext> {
    const readAt = clock.now().getTime();
    const [account, { policy, settings }] = await Promise.all([
      resolveAccount(deps.accounts, caller, target),
      deps.policyAndSettings(caller.tenantId, target.identifier),
    ]);
    return { account, policy, settings, readAt };
  }

  return {
    async load(caller, target, options = {}) {
      const key = keyOf(caller, target);
      if (!options.fresh && deps.ttlMs > 0) {
        const hit = cache.get(key);
        const since = deps.trustedSince();
        if (
          hit &&
          since !== null &&
          hit.context.readAt >= since &&
          hit.context.readAt > clock.now().getTime() - deps.ttlMs
        ) {
          return hit.context;
        }
        cache.delete(key);
      }
      const context = await read(caller, target);
      if (deps.ttlMs > 0) {
        if (cache.size >= maxEntries) cache.delete(cache.keys().next().value as string);
        cache.set(key, { tenantId: caller.tenantId, identifier: target.identifier, context });
      }
      return context;
    },

    invalidate(change) {
      for (const [key, entry] of cache) {
        if (entry.tenantId !== change.tenantId) continue;
        if (change.identifier !== undefined && entry.identifier !== change.identifier) continue;
        if (change.accountId !== undefined && entry.context.account.account.id !== change.accountId) continue;
        cache.delete(key);
      }
    },
  };
}

/** One running call as the registry knows it. */
export interface LiveCall {
  readonly tenantId: string;
  readonly identifier: string;
  readonly accountId: string;
  /** The credential it runs under: an MCP token or grant (`mcp_…`, `oag_…`) or a tenant API key (`key_…`). */
  readonly tokenId: string | null;
}

export interface LiveCallHandle {
  /**
   * Before each upstream request: `ok` to go on with what the call holds, `stale` to read its
   * context again first (something changed, or the bus may have missed a change since the call
   * read it), `revoked` to refuse.
   */
  state(contextReadAt: number): 'ok' | 'stale' | 'revoked';
  /** The call read its context again (after `stale`). */
  refreshed(): void;
  release(): void;
}

/** How long a change is remembered for calls that register after it (their context may predate it). */
const RECENT_MS = 60_000;

function matches(call: LiveCall, change: Invalidation): boolean {
  return (
    call.tenantId === change.tenantId &&
    (change.identifier === undefined || call.identifier === change.identifier) &&
    (change.accountId === undefined || call.accountId === change.accountId) &&
    (change.tokenId === undefined || call.tokenId === change.tokenId)
  );
}

/**
 * The calls running on this replica, so a revocation or change published on the bus reaches
 * them before their next upstream request, wherever it was made. Changes are also remembered for
 * a minute: a call whose context was read before a change it registered after still sees it.
 */
export function createLiveCalls(deps: { trustedSince: () => number | null; clock?: Clock }) {
  const clock = deps.clock ?? systemClock;
  const calls = new Map<LiveCall, { revoked: boolean; stale: boolean }>();
  let recent: Array<{ at: number; change: Invalidation }> = [];

  return {
    register(call: LiveCall, contextReadAt: number): LiveCallHandle {
      const flags = { revoked: false, stale: false };
      const now = clock.now().getTime();
      recent = recent.filter((r) => r.at > now - RECENT_MS);
      for (const { at, change } of recent) {
        if (at < contextReadAt || !matches(call, change)) continue;
        if (change.reason === 'revoked') flags.revoked = true;
        else flags.stale = true;
      }
      calls.set(call, flags);
      return {
        state(readAt) {
          if (flags.revoked) return 'revoked';
          const since = deps.trustedSince();
          if (flags.stale || since === null || since > readAt) return 'stale';
          return 'ok';
        },
        refreshed() {
          flags.stale = false;
        },
        release() {
          calls.delete(call);
        },
      };
    },

    invalidate(change: Invalidation): number {
      recent.push({ at: clock.now().getTime(), change });
      let hit = 0;
      for (const [call, flags] of calls) {
        if (!matches(call, change)) continue;
        hit++;
        if (change.reason === 'revoked') flags.revoked = true;
        else flags.stale = true;
      }
      return hit;
    },

    get size(): number {
      return calls.size;
    },
  };
}

export type LiveCalls = ReturnType<typeof createLiveCalls>;

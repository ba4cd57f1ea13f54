import { MAX_RETENTION_DAYS, MIN_RETENTION_DAYS } from '@warden/audit';
import { WardenError } from '@warden/core';
import type { TenantSettings } from '@warden/db';
import type { BudgetSpec } from '@warden/ratelimit';
import { formatBudget, parseBudget } from '@warden/ratelimit';
import type { ActorContext, TenantService } from '@warden/vault';
import type { TenantToolSettings } from './call-context.ts';
import type { Policy } from './policy.ts';

/** What the operator sets for every tenant; tenants may tighten it, never loosen it. */
export interface OperatorDefaults {
  readonly budget: BudgetSpec;
  readonly retentionDays: number;
}

/** A settings change from a tenant; `null` returns a setting to the operator's default. */
export interface SettingsPatch {
  readonly budget?: string | null;
  readonly audit?: {
    readonly retention_days?: number | null;
    readonly capture_code?: boolean | null;
  };
  readonly approvals?: {
    /** The API keys that may decide write approvals; null (or []) lets any key of the tenant. */
    readonly approver_api_key_ids?: readonly string[] | null;
  };
}

/** Approver keys one tenant may name. */
export const MAX_APPROVER_KEYS = 50;

interface StoredApprovals {
  approver_api_key_ids?: string[];
}

interface StoredAudit {
  retention_days?: number;
  capture_code?: boolean;
}

/**
 * Whether `tenant` can never let more requests through than `ceiling` in any window of the
 * ceiling's length: a window of `ceiling.windowSeconds` is covered by ⌈T₀ / T₁⌉ windows of the
 * tenant's, each holding at most its capacity.
 */
export function withinCeiling(tenant: BudgetSpec, ceiling: BudgetSpec): boolean {
  return tenant.capacity * Math.ceil(ceiling.windowSeconds / tenant.windowSeconds) <= ceiling.capacity;
}

/** The effective settings of a tenant: its stored choices over the operator's defaults. */
export function effectiveSettings(defaults: OperatorDefaults, stored: TenantSettings): TenantToolSettings {
  const audit = (stored.audit ?? {}) as StoredAudit;
  let budget = defaults.budget;
  if (typeof stored.budget === 'string') {
    const parsed = parseBudget(stored.budget, 'budget');
    // A stored budget from before the operator lowered the default no longer applies above it.
    budget = withinCeiling(parsed, defaults.budget) ? parsed : defaults.budget;
  }
  return {
    budget,
    retentionDays: audit.retention_days ?? defaults.retentionDays,
    captureCode: audit.capture_code ?? true,
    approverApiKeyIds: ((stored.approvals ?? {}) as StoredApprovals).approver_api_key_ids ?? null,
  };
}

/**
 * The one owner of tenant settings (budget, audit retention and code capture, the tenant
 * policy): reads apply the operator's defaults and ceilings, and every write goes through the
 * tenant row's lock with its audit record (see `TenantService.updateSettings`).
 */
export function createTenantSettingsService(deps: {
  tenants: Pick<TenantService, 'get' | 'updateSettings' | 'listApiKeys'>;
  defaults: OperatorDefaults;
}) {
  const { defaults } = deps;

  /**
   * The approver list a patch names, checked: each an API key of this tenant, not revoked.
   * Undefined: not changed; null: cleared.
   */
  async function approverList(
    tenantId: string,
    patch: SettingsPatch,
  ): Promise<{ ids: string[] | null; live: ReadonlySet<string> } | undefined> {
    const ids = patch.approvals?.approver_api_key_ids;
    if (ids === undefined) return undefined;
    const live = new Set(
      (await deps.tenants.listApiKeys(tenantId)).filter((key) => key.revokedAt === null).map((key) => key.id),
    );
    if (ids === null) return { ids: null, live };
    const field = 'approvals.approver_api_key_ids';
    if (!Array.isArray(ids) || ids.length > MAX_APPROVER_KEYS) {
      throw new WardenError(
        'invalid_request',
        `${field}: must be a list of at most ${MAX_APPROVER_KEYS} API key ids`,
        {
          field,
        },
      );
    }
    ids.forEach((id, i) => {
      if (typeof id !== 'string' || !live.has(id)) {
        throw new WardenError(
          'invalid_request',
          `${field}[${i}]: is not an API key of this tenant that is in use (see GET /admin/v1/tenants/{id}/api_keys)`,
          { field: `${field}[${i}]` },
        );
      }
    });
    return { ids: [...new Set(ids)], live };
  }

  function applyPatch(
    current: TenantSettings,
    patch: SettingsPatch,
    approvers: { ids: string[] | null; live: ReadonlySet<string> } | undefined,
    actor: ActorContext['actor'],
  ): TenantSettings {
    const next: TenantSettings = { ...current };
    if (approvers !== undefined) {
      // Once approvers are named, only one of them may change who they are: a key that plans
      // writes cannot name itself an approver. When none of them is in use any more (the
      // operator revoked them all), any key may, so the tenant is never locked out.
      const named = (((current.approvals ?? {}) as StoredApprovals).approver_api_key_ids ?? []).filter((id) =>
        approvers.live.has(id),
      );
      if (named.length > 0 && !(actor.type === 'api_key' && actor.id !== null && named.includes(actor.id))) {
        throw new WardenError(
          'forbidden',
          'approvals.approver_api_key_ids: only one of the approver API keys named now may change the approvers',
          { field: 'approvals.approver_api_key_ids' },
        );
      }
      if (approvers.ids === null || approvers.ids.length === 0) delete next.approvals;
      else next.approvals = { approver_api_key_ids: approvers.ids } satisfies StoredApprovals;
    }
    if (patch.budget !== undefined) {
      if (patch.budget === null) {
        delete next.budget;
      } else {
        const budget = parseBudget(patch.budget, 'budget');
        if (!withinCeiling(budget, defaults.budget)) {
          throw new WardenError(
            'invalid_request',
            `budget: ${formatBudget(budget)} would allow more requests than this deployment's limit of ${formatBudget(defaults.budget)}; a tenant may only lower it (or pass null for the default)`,
            { field: 'budget' },
          );
        }
        next.budget = formatBudget(budget);
      }
    }
    if (patch.audit !== undefined) {
      const audit: StoredAudit = { ...((current.audit ?? {}) as StoredAudit) };
      const { retention_days: days, capture_code: capture } = patch.audit;
      if (days === null) delete audit.retention_days;
      else if (days !== undefined) {
        if (!Number.isInteger(days) || days < MIN_RETENTION_DAYS || days > MAX_RETENTION_DAYS) {
          throw new WardenError(
            'invalid_request',
            `audit.retention_days: must be a whole number of days from ${MIN_RETENTION_DAYS} to ${MAX_RETENTION_DAYS}`,
            { field: 'audit.retention_days' },
          );
        }
        audit.retention_days = days;
      }
      if (capture === null) delete audit.capture_code;
      else if (capture !== undefined) audit.capture_code = capture;
      if (Object.keys(audit).length > 0) next.audit = audit;
      else delete next.audit;
    }
    return next;
  }

  return {
    async effective(tenantId: string): Promise<TenantToolSettings> {
      return effectiveSettings(defaults, (await deps.tenants.get(tenantId)).settings);
    },

    /** Applies a tenant's change under the row lock; resolves to the settings now in force. */
    async update(ctx: ActorContext, patch: SettingsPatch): Promise<TenantToolSettings> {
      const approvers = await approverList(ctx.tenantId, patch);
      const { after } = await deps.tenants.updateSettings(ctx, 'settings.changed', (current) =>
        applyPatch(current, patch, approvers, ctx.actor),
      );
      return effectiveSettings(defaults, after);
    },

    async setTenantPolicy(ctx: ActorContext, policy: Policy): Promise<void> {
      await deps.tenants.updateSettings(ctx, 'policy.changed', (current) => ({ ...current, policy }));
    },
  };
}

export type TenantSettingsService = ReturnType<typeof createTenantSettingsService>;

import { lifecycleRecord } from '@warden/audit';
import { notFound } from '@warden/core';
import { withConflictRetry } from '@warden/db';
import type { Database, TenantSettings } from '@warden/db';
import type { Kysely } from 'kysely';
import type { ActorContext, LifecycleAudit } from '@warden/vault';
import type { Policy } from './policy.ts';

export interface PolicyStore {
  tenantPolicy(tenantId: string): Promise<Policy>;
  setTenantPolicy(ctx: ActorContext, policy: Policy): Promise<void>;
  identityPolicy(tenantId: string, identifier: string): Promise<Policy>;
  setIdentityPolicy(ctx: ActorContext, identifier: string, policy: Policy): Promise<void>;
  deleteIdentityPolicy(ctx: ActorContext, identifier: string): Promise<boolean>;
  /** Both policies in one round trip, for the execute path. */
  effective(tenantId: string, identifier: string): Promise<{ tenant: Policy; identity: Policy }>;
  /** Both policies and the tenant's raw settings in one round trip. */
  effectiveWithSettings(
    tenantId: string,
    identifier: string,
  ): Promise<{ tenant: Policy; identity: Policy; settings: TenantSettings }>;
}

export function createPolicyStore(deps: {
  db: Kysely<Database>;
  /** The tenant policy lives in the tenant settings, whose one owner writes it. */
  settings: { setTenantPolicy(ctx: ActorContext, policy: Policy): Promise<void> };
  /** Writes lifecycle records inside the change's transaction. */
  audit?: LifecycleAudit;
  /** Told after an identity policy changed, so running calls and caches hear of it. */
  onIdentityPolicyChanged?: (tenantId: string, identifier: string) => Promise<void> | void;
}): PolicyStore {
  const { db } = deps;
  const audit = deps.audit ?? (async () => {});
  const changed = deps.onIdentityPolicyChanged ?? (() => undefined);

  /** Changes one identity's policy and records old → new, in one transaction. */
  async function changeIdentityPolicy(
    ctx: ActorContext,
    identifier: string,
    next: Policy | null,
  ): Promise<boolean> {
    const existed = await withConflictRetry(() =>
      db.transaction().execute(async (tx) => {
        // The tenant row's lock, as for the tenant's settings and policy (one locking rule): an
        // identifier with no policy yet has no row of its own to lock, and two first writers
        // would each find none.
        await tx
          .selectFrom('tenants')
          .select('id')
          .where('id', '=', ctx.tenantId)
          .forUpdate()
          .executeTakeFirst();
        const before = await tx
          .selectFrom('identity_policies')
          .select('policy')
          .where('tenant_id', '=', ctx.tenantId)
          .where('identifier', '=', identifier)
          .forUpdate()
          .executeTakeFirst();
        if (next === null) {
          if (!before) return false;
          await tx
            .deleteFrom('identity_policies')
            .where('tenant_id', '=', ctx.tenantId)
            .where('identifier', '=', identifier)
            .execute();
        } else {
          await tx
            .insertInto('identity_policies')
            .values({ tenant_id: ctx.tenantId, identifier, policy: JSON.stringify(next) })
            .onConflict((oc) =>
              oc
                .columns(['tenant_id', 'identifier'])
                .doUpdateSet({ policy: JSON.stringify(next), updated_at: new Date() }),
            )
            .execute();
        }
        await audit(tx, ctx.tenantId, [
          lifecycleRecord(
            { caller: ctx.actor, identifier },
            {
              action: next === null ? 'identity_policy.deleted' : 'identity_policy.changed',
              details: { before: before?.policy ?? null, after: next },
            },
          ),
        ]);
        return Boolean(before);
      }),
    );
    await changed(ctx.tenantId, identifier);
    return existed;
  }

  async function effectiveWithSettings(tenantId: string, identifier: string) {
    const row = await db
      .selectFrom('tenants as t')
      .leftJoin('identity_policies as p', (join) =>
        join.onRef('p.tenant_id', '=', 't.id').on('p.identifier', '=', identifier),
      )
      .select(['t.settings', 'p.policy'])
      .where('t.id', '=', tenantId)
      .executeTakeFirst();
    if (!row) throw notFound('tenant');
    return {
      tenant: ((row.settings as { policy?: Policy }).policy ?? {}) as Policy,
      identity: (row.policy ?? {}) as Policy,
      settings: row.settings,
    };
  }

  return {
    effectiveWithSettings,
    async tenantPolicy(tenantId) {
      const row = await db
        .selectFrom('tenants')
        .select('settings')
        .where('id', '=', tenantId)
        .executeTakeFirst();
      return ((row?.settings as { policy?: Policy } | undefined)?.policy ?? {}) as Policy;
    },
    setTenantPolicy: (ctx, policy) => deps.settings.setTenantPolicy(ctx, policy),
    async identityPolicy(tenantId, identifier) {
      const row = await db
        .selectFrom('identity_policies')
        .select('policy')
        .where('tenant_id', '=', tenantId)
        .where('identifier', '=', identifier)
        .executeTakeFirst();
      return (row?.policy ?? {}) as Policy;
    },
    async setIdentityPolicy(ctx, identifier, policy) {
      await changeIdentityPolicy(ctx, identifier, policy);
    },
    deleteIdentityPolicy: (ctx, identifier) => changeIdentityPolicy(ctx, identifier, null),
    async effective(tenantId, identifier) {
      const { tenant, identity } = await effectiveWithSettings(tenantId, identifier);
      return { tenant, identity };
    },
  };
}

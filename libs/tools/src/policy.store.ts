import { notFound } from '@warden/core';
import type { Database, TenantSettings } from '@warden/db';
import type { Kysely } from 'kysely';
import type { Policy } from './policy.ts';

export interface PolicyStore {
  tenantPolicy(tenantId: string): Promise<Policy>;
  setTenantPolicy(tenantId: string, policy: Policy): Promise<void>;
  identityPolicy(tenantId: string, identifier: string): Promise<Policy>;
  setIdentityPolicy(tenantId: string, identifier: string, policy: Policy): Promise<void>;
  deleteIdentityPolicy(tenantId: string, identifier: string): Promise<boolean>;
  /** Both policies in one round trip, for the execute path. */
  effective(tenantId: string, identifier: string): Promise<{ tenant: Policy; identity: Policy }>;
  /** Both policies and the tenant's raw settings in one round trip. */
  effectiveWithSettings(
    tenantId: string,
    identifier: string,
  ): Promise<{ tenant: Policy; identity: Policy; settings: TenantSettings }>;
}

export function createPolicyStore(deps: { db: Kysely<Database> }): PolicyStore {
  const { db } = deps;
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
    async setTenantPolicy(tenantId, policy) {
      await db.transaction().execute(async (tx) => {
        const row = await tx
          .selectFrom('tenants')
          .select('settings')
          .where('id', '=', tenantId)
          .forUpdate()
          .executeTakeFirstOrThrow();
        await tx
          .updateTable('tenants')
          .set({ settings: JSON.stringify({ ...row.settings, policy }), updated_at: new Date() })
          .where('id', '=', tenantId)
          .execute();
      });
    },
    async identityPolicy(tenantId, identifier) {
      const row = await db
        .selectFrom('identity_policies')
        .select('policy')
        .where('tenant_id', '=', tenantId)
        .where('identifier', '=', identifier)
        .executeTakeFirst();
      return (row?.policy ?? {}) as Policy;
    },
    async setIdentityPolicy(tenantId, identifier, policy) {
      await db
        .insertInto('identity_policies')
        .values({ tenant_id: tenantId, identifier, policy: JSON.stringify(policy) })
        .onConflict((oc) =>
          oc
            .columns(['tenant_id', 'identifier'])
            .doUpdateSet({ policy: JSON.stringify(policy), updated_at: new Date() }),
        )
        .execute();
    },
    async deleteIdentityPolicy(tenantId, identifier) {
      const result = await db
        .deleteFrom('identity_policies')
        .where('tenant_id', '=', tenantId)
        .where('identifier', '=', identifier)
        .executeTakeFirst();
      return result.numDeletedRows > 0n;
    },
    async effective(tenantId, identifier) {
      const { tenant, identity } = await effectiveWithSettings(tenantId, identifier);
      return { tenant, identity };
    },
  };
}

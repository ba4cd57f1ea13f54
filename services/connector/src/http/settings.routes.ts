import { WardenError } from '@warden/core';
import { MAX_RETENTION_DAYS, MIN_RETENTION_DAYS } from '@warden/audit';
import { formatBudget, parseBudget } from '@warden/ratelimit';
import type { TenantService } from '@warden/vault';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { TenantToolSettings } from '@warden/tools';
import { tenantAuth, tenantOf } from './auth.ts';
import { errorResponses } from './schemas.ts';

const security = [{ tenantKey: [] }];

const settingsSchema = z
  .object({
    budget: z.string().describe('Upstream requests per seconds for each Cloudflare user, e.g. "1000/300".'),
    audit: z.object({
      retention_days: z
        .number()
        .int()
        .describe(`${MIN_RETENTION_DAYS} to ${MAX_RETENTION_DAYS}; applies to new records.`),
      capture_code: z
        .boolean()
        .describe('Store submitted code in the audit trail (its SHA-256 is always stored).'),
    }),
  })
  .meta({ id: 'TenantSettings' });

function settingsJson(s: TenantToolSettings) {
  return {
    budget: formatBudget(s.budget),
    audit: { retention_days: s.retentionDays, capture_code: s.captureCode },
  };
}

export async function settingsRoutes(
  app: FastifyInstance,
  deps: {
    tenants: TenantService;
    tenantSettings: (tenantId: string) => Promise<TenantToolSettings>;
    onRetentionChange: (days: number) => Promise<void>;
  },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.addHook('onRequest', tenantAuth(deps.tenants));

  r.get('/api/v1/settings', {
    schema: {
      tags: ['settings'],
      summary: 'Effective tenant settings',
      security,
      response: { 200: z.object({ settings: settingsSchema }), ...errorResponses },
    },
    handler: async (request) => ({
      settings: settingsJson(await deps.tenantSettings(tenantOf(request).tenantId)),
    }),
  });

  r.patch('/api/v1/settings', {
    schema: {
      tags: ['settings'],
      summary: 'Change the rate budget or audit settings of the tenant',
      security,
      body: z.strictObject({
        budget: z.string().optional(),
        audit: z
          .strictObject({
            retention_days: z.number().int().min(MIN_RETENTION_DAYS).max(MAX_RETENTION_DAYS).optional(),
            capture_code: z.boolean().optional(),
          })
          .optional(),
      }),
      response: { 200: z.object({ settings: settingsSchema }), ...errorResponses },
    },
    handler: async (request) => {
      const { tenantId } = tenantOf(request);
      const patch: Record<string, unknown> = {};
      if (request.body.budget !== undefined) {
        const budget = parseBudget(request.body.budget, 'budget');
        if (budget.capacity > 100_000) {
          throw new WardenError('invalid_request', 'budget: at most 100000 requests per window', {
            field: 'budget',
          });
        }
        patch.budget = formatBudget(budget);
      }
      if (request.body.audit) {
        const current = (await deps.tenants.get(tenantId)).settings.audit as
          Record<string, unknown> | undefined;
        patch.audit = { ...current, ...request.body.audit };
        if (request.body.audit.retention_days !== undefined)
          await deps.onRetentionChange(request.body.audit.retention_days);
      }
      await deps.tenants.updateSettings(tenantId, patch);
      return { settings: settingsJson(await deps.tenantSettings(tenantId)) };
    },
  });
}

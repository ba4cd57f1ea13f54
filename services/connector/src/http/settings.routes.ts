import { MAX_RETENTION_DAYS, MIN_RETENTION_DAYS } from '@warden/audit';
import { formatBudget } from '@warden/ratelimit';
import type { TenantService } from '@warden/vault';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { TenantSettingsService, TenantToolSettings } from '@warden/tools';
import { actorOf, tenantAuth, tenantOf } from './auth.ts';
import { errorResponse, errorResponses } from './schemas.ts';

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
    approvals: z.object({
      approver_api_key_ids: z
        .array(z.string())
        .nullable()
        .describe(
          'The API keys that may approve or reject write approvals; null: any key of the tenant (never the key that planned the writes).',
        ),
    }),
  })
  .meta({ id: 'TenantSettings' });

function settingsJson(s: TenantToolSettings) {
  return {
    budget: formatBudget(s.budget),
    audit: { retention_days: s.retentionDays, capture_code: s.captureCode },
    approvals: { approver_api_key_ids: s.approverApiKeyIds ? [...s.approverApiKeyIds] : null },
  };
}

export async function settingsRoutes(
  app: FastifyInstance,
  deps: {
    tenants: TenantService;
    settings: TenantSettingsService;
    /** Runs after a retention change was saved, so maintenance sees the new value. */
    onRetentionChange: () => Promise<unknown>;
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
      settings: settingsJson(await deps.settings.effective(tenantOf(request).tenantId)),
    }),
  });

  r.patch('/api/v1/settings', {
    schema: {
      tags: ['settings'],
      summary:
        'Change the rate budget or audit settings of the tenant (null returns a setting to the default)',
      description:
        "A tenant may lower the deployment's rate budget, never raise it; `null` returns a setting to the deployment's default. `approvals.approver_api_key_ids` names the API keys that may decide write approvals; once named, only one of them may change it (403 otherwise).",
      security,
      body: z.strictObject({
        budget: z.string().nullable().optional(),
        audit: z
          .strictObject({
            retention_days: z
              .number()
              .int()
              .min(MIN_RETENTION_DAYS)
              .max(MAX_RETENTION_DAYS)
              .nullable()
              .optional(),
            capture_code: z.boolean().nullable().optional(),
          })
          .optional(),
        approvals: z
          .strictObject({
            approver_api_key_ids: z
              .array(z.string().max(100))
              .max(50)
              .nullable()
              .optional()
              .describe(
                'Name the API keys that may decide write approvals (null or [] for any key); once named, only one of them may change the list.',
              ),
          })
          .optional(),
      }),
      response: {
        200: z.object({ settings: settingsSchema }),
        // Only a named approver may change the approvers.
        403: errorResponse,
        ...errorResponses,
      },
    },
    handler: async (request) => {
      const { budget, audit, approvals } = request.body;
      const settings = await deps.settings.update(actorOf(request), {
        ...(budget !== undefined ? { budget } : {}),
        ...(audit !== undefined
          ? {
              audit: {
                ...(audit.retention_days !== undefined ? { retention_days: audit.retention_days } : {}),
                ...(audit.capture_code !== undefined ? { capture_code: audit.capture_code } : {}),
              },
            }
          : {}),
        ...(approvals?.approver_api_key_ids !== undefined
          ? { approvals: { approver_api_key_ids: approvals.approver_api_key_ids } }
          : {}),
      });
      // Partitions for the new retention are made with the value just saved.
      if (audit?.retention_days !== undefined) await deps.onRetentionChange();
      return { settings: settingsJson(settings) };
    },
  });
}

import type { AuditEvent, AuditStore } from '@warden/audit';
import {
  AUDIT_OUTCOMES,
  EXPORT_FORMATS,
  SYSTEM_TENANT_ID,
  createAuditExportStream,
  exportContentType,
  verifyChain,
} from '@warden/audit';
import { WardenError } from '@warden/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Container } from '../container.ts';
import { adminAuth, tenantAuth, tenantOf } from './auth.ts';
import { errorResponses, pageSize } from './schemas.ts';

const security = [{ tenantKey: [] }];
const MAX_EXPORT_RANGE_DAYS = 400;

const auditEvent = z
  .object({
    id: z.string(),
    tenant_id: z.string(),
    seq: z.number(),
    occurred_at: z.string(),
    kind: z.string(),
    action: z.string(),
    outcome: z.string(),
    execution_id: z.string().nullable(),
    identifier: z.string().nullable(),
    caller: z.object({
      type: z.string(),
      id: z.string().nullable(),
      client_name: z.string().nullable(),
      client_version: z.string().nullable(),
      ip: z.string().nullable(),
    }),
    agent_run_id: z.string().nullable(),
    tool_name: z.string().nullable(),
    connected_account_id: z.string().nullable(),
    upstream: z
      .object({
        method: z.string(),
        path_template: z.string().nullable(),
        path: z.string(),
        status: z.number().nullable(),
        cf_ray: z.string().nullable(),
      })
      .nullable(),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    duration_ms: z.number().nullable(),
    request_bytes: z.number().nullable(),
    response_bytes: z.number().nullable(),
    code_sha256: z.string().nullable(),
    code: z.string().nullable(),
    intent_id: z
      .string()
      .nullable()
      .optional()
      .describe(
        "On an upstream request's outcome: the id of its intent (committed before the request was sent).",
      ),
    body_sha256: z
      .string()
      .nullable()
      .optional()
      .describe("SHA-256 of an upstream request's body, on its intent."),
    details: z
      .record(z.string(), z.unknown())
      .nullable()
      .optional()
      .describe("Event specifics: a lifecycle change's before and after, an upstream request's query."),
    prev_hash: z.string(),
    hash: z.string(),
  })
  .meta({ id: 'AuditEvent' });

const isoDate = (description: string) =>
  z
    .string()
    .max(100)
    .refine((v) => !Number.isNaN(Date.parse(v)), `must be an ISO 8601 time, e.g. 2026-01-31T00:00:00Z`)
    .transform((v) => new Date(v))
    .describe(description);

/** An export without `from` covers the day before `to` (which defaults to now). */
export const DEFAULT_EXPORT_WINDOW_HOURS = 24;

function range(from: Date | undefined, to: Date | undefined, toGiven = true): void {
  if (from && to && from >= to) {
    throw toGiven
      ? new WardenError('invalid_request', 'to: must be after from', { field: 'to' })
      : new WardenError(
          'invalid_request',
          'from: must be in the past when to is not given (to defaults to now)',
          {
            field: 'from',
          },
        );
  }
}

export async function auditRoutes(
  app: FastifyInstance,
  deps: Pick<Container, 'tenants' | 'db' | 'clock'> & { audit: AuditStore },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.addHook('onRequest', tenantAuth(deps.tenants));

  r.get('/api/v1/audit/events', {
    schema: {
      tags: ['audit'],
      summary: 'Audit events of the tenant, oldest first',
      security,
      querystring: z.object({
        from: isoDate('Oldest event time, inclusive (ISO 8601)').optional(),
        to: isoDate('Newest event time, exclusive (ISO 8601)').optional(),
        identifier: z.string().optional(),
        tool_name: z.string().optional(),
        outcome: z
          .enum(AUDIT_OUTCOMES as [AuditEvent['outcome'], ...AuditEvent['outcome'][]])
          .optional()
          .describe(
            '`pending`: an intent (the request was about to be sent); `unknown`: its outcome was never recorded.',
          ),
        kind: z
          .enum([
            'tool_call',
            'upstream_request',
            'offboarding',
            'connected_account',
            'lifecycle',
            'mcp_oauth',
          ])
          .optional(),
        action: z
          .string()
          .max(100)
          .optional()
          .describe('e.g. cloudflare.request, cloudflare.verify, connected_account.created, policy.changed'),
        execution_id: z.string().optional(),
        page_size: pageSize,
        page_token: z.string().max(500).optional(),
      }),
      response: {
        200: z.object({ events: z.array(auditEvent), next_page_token: z.string().nullable() }),
        ...errorResponses,
      },
    },
    handler: async (request) => {
      const q = request.query;
      range(q.from, q.to);
      const page = await deps.audit.query(tenantOf(request).tenantId, {
        ...(q.from ? { from: q.from } : {}),
        ...(q.to ? { to: q.to } : {}),
        ...(q.identifier !== undefined ? { identifier: q.identifier } : {}),
        ...(q.tool_name !== undefined ? { toolName: q.tool_name } : {}),
        ...(q.outcome !== undefined ? { outcome: q.outcome } : {}),
        ...(q.kind !== undefined ? { kind: q.kind } : {}),
        ...(q.action !== undefined ? { action: q.action } : {}),
        ...(q.execution_id !== undefined ? { executionId: q.execution_id } : {}),
        ...(q.page_size !== undefined ? { pageSize: q.page_size } : {}),
        ...(q.page_token !== undefined ? { pageToken: q.page_token } : {}),
      });
      return { events: page.events as AuditEvent[], next_page_token: page.nextPageToken };
    },
  });

  r.get('/api/v1/audit/verify', {
    schema: {
      tags: ['audit'],
      summary: "Check the tenant's audit hash chain (what `warden audit verify --tenant` reports)",
      description:
        'Recomputes every hash and link of the chain; reads only. Takes time proportional to the trail.',
      security,
      response: {
        200: z.object({
          ok: z.boolean(),
          checked: z.number(),
          expired: z.number().describe('Records accounted for by retention anchors (dropped partitions)'),
          problems: z.array(z.object({ seq: z.number(), kind: z.string(), detail: z.string() })),
          intents_without_outcome: z.array(
            z.object({ seq: z.number(), id: z.string(), occurred_at: z.string() }),
          ),
          unknown_outcomes: z.number(),
        }),
        ...errorResponses,
      },
    },
    handler: async (request) => {
      const {
        tenant_id: _tenant,
        intents_without_outcome,
        ...report
      } = await verifyChain(deps.db.kysely, tenantOf(request).tenantId);
      return { ...report, intents_without_outcome: [...intents_without_outcome] };
    },
  });

  exportRoute(app, deps, {
    url: '/api/v1/audit/export',
    summary: 'Stream audit events of a time range, one per line (NDJSON, OCSF 1.3 API Activity, or CEF)',
    security,
    trailOf: (request) => tenantOf(request).tenantId,
  });
}

/** The deployment's own trail, for operators (admin token). */
export async function systemAuditRoutes(
  app: FastifyInstance,
  deps: Pick<Container, 'config' | 'clock'> & { audit: AuditStore },
): Promise<void> {
  app.addHook('onRequest', adminAuth(deps.config.adminToken));
  exportRoute(app, deps, {
    url: '/admin/v1/audit/export',
    summary:
      "Stream the deployment's own audit events (spec loads, key rotations and retirements) of a time range, one per line",
    security: [{ adminToken: [] }],
    trailOf: () => SYSTEM_TENANT_ID,
  });
}

/**
 * `GET <url>`: a trail's events of a time range as a download (NDJSON, OCSF or CEF). The tenant
 * API serves a tenant's trail; the admin API serves the deployment's own (spec loads, key
 * rotations and retirements: events of no tenant).
 */
function exportRoute(
  app: FastifyInstance,
  deps: { audit: AuditStore; clock: Container['clock'] },
  route: {
    url: string;
    summary: string;
    security: Array<Record<string, string[]>>;
    trailOf: (request: FastifyRequest) => string;
  },
): void {
  app.withTypeProvider<ZodTypeProvider>().get(route.url, {
    schema: {
      tags: ['audit'],
      summary: route.summary,
      description: `Without \`to\` the range ends now; without \`from\` it starts ${DEFAULT_EXPORT_WINDOW_HOURS} hours before \`to\`. A range spans at most ${MAX_EXPORT_RANGE_DAYS} days.`,
      security: route.security,
      querystring: z.object({
        from: isoDate(
          `Start of the range, inclusive (ISO 8601); default ${DEFAULT_EXPORT_WINDOW_HOURS} hours before to`,
        ).optional(),
        to: isoDate('End of the range, exclusive (ISO 8601); default now').optional(),
        format: z.enum(EXPORT_FORMATS).default('ndjson'),
      }),
      response: { ...errorResponses },
    },
    handler: async (request, reply) => {
      const { format } = request.query;
      // Now by the database's clock, which stamps the records.
      const to = request.query.to ?? deps.clock.now();
      const from = request.query.from ?? new Date(to.getTime() - DEFAULT_EXPORT_WINDOW_HOURS * 3_600_000);
      range(from, to, request.query.to !== undefined);
      if (to.getTime() - from.getTime() > MAX_EXPORT_RANGE_DAYS * 86_400_000) {
        throw new WardenError(
          'invalid_request',
          `to: the range may span at most ${MAX_EXPORT_RANGE_DAYS} days; export longer periods in parts`,
          { field: 'to' },
        );
      }
      const stream = createAuditExportStream(deps.audit.stream(route.trailOf(request), { from, to }), format);
      stream.on('error', (err) => request.log.error({ err }, 'audit export failed mid-stream'));
      // The body is a byte stream; Fastify sends it as is, with backpressure.
      return (reply as FastifyReply)
        .header('content-type', exportContentType(format))
        .header(
          'content-disposition',
          `attachment; filename="warden-audit-${from.toISOString().slice(0, 10)}.${format === 'cef' ? 'cef' : 'ndjson'}"`,
        )
        .send(stream);
    },
  });
}

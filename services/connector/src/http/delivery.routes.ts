import type { DeliveryService, DeliveryView, OffboardingService, SinkView } from '@warden/tools';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Container } from '../container.ts';
import { actorOf, tenantAuth, tenantOf } from './auth.ts';
import { errorResponses } from './schemas.ts';

const security = [{ tenantKey: [] }];

const sinkSchema = z
  .object({
    id: z.string(),
    type: z.string(),
    name: z.string(),
    config: z.record(z.string(), z.unknown()).describe('The configuration without its secret.'),
    enabled: z.boolean(),
    created_at: z.string(),
  })
  .meta({ id: 'AuditSink' });

const deliverySchema = z
  .object({
    id: z.string(),
    event_id: z.string(),
    status: z.enum(['pending', 'sending', 'delivered', 'failed']),
    attempts: z.number(),
    last_error: z.string().nullable(),
    next_attempt_at: z.string(),
    created_at: z.string(),
    delivered_at: z.string().nullable(),
  })
  .meta({ id: 'Delivery' });

const deliveriesQuery = z.object({
  status: z.enum(['pending', 'sending', 'delivered', 'failed']).optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
});

function sinkJson(s: SinkView) {
  return {
    id: s.id,
    type: s.type,
    name: s.name,
    config: s.config,
    enabled: s.enabled,
    created_at: s.createdAt.toISOString(),
  };
}

function deliveryJson(d: DeliveryView) {
  return {
    id: d.id,
    event_id: d.eventId,
    status: d.status as 'pending' | 'sending' | 'delivered' | 'failed',
    attempts: d.attempts,
    last_error: d.lastError,
    next_attempt_at: d.nextAttemptAt.toISOString(),
    created_at: d.createdAt.toISOString(),
    delivered_at: d.deliveredAt?.toISOString() ?? null,
  };
}

export async function deliveryRoutes(
  app: FastifyInstance,
  deps: Pick<Container, 'tenants'> & { delivery: DeliveryService; offboarding: OffboardingService },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.addHook('onRequest', tenantAuth(deps.tenants));

  r.post('/api/v1/audit/sinks', {
    schema: {
      tags: ['audit'],
      summary: 'Add a SIEM sink: HTTPS webhook (HMAC-signed), Splunk HEC, or syslog RFC 5424 over TCP/TLS',
      security,
      body: z.strictObject({
        name: z.string().max(100).optional(),
        config: z
          .record(z.string(), z.unknown())
          .describe(
            '{type:"webhook", url, secret} | {type:"splunk_hec", url, token, index?} | {type:"syslog", host, port, transport:"tcp"|"tls", ca?, server_name?, facility?, app_name?, message_format?:"json"|"cef"}',
          ),
      }),
      response: { 201: z.object({ sink: sinkSchema }), ...errorResponses },
    },
    handler: async (request, reply) => {
      const sink = await deps.delivery.createSink(actorOf(request), request.body);
      return reply.code(201).send({ sink: sinkJson(sink) });
    },
  });

  r.get('/api/v1/audit/sinks', {
    schema: {
      tags: ['audit'],
      summary: 'SIEM sinks of the tenant',
      security,
      response: { 200: z.object({ sinks: z.array(sinkSchema) }), ...errorResponses },
    },
    handler: async (request) => ({
      sinks: (await deps.delivery.listSinks(tenantOf(request).tenantId)).map(sinkJson),
    }),
  });

  r.delete('/api/v1/audit/sinks/:id', {
    schema: {
      tags: ['audit'],
      summary: 'Remove a SIEM sink (its pending deliveries are marked failed)',
      security,
      params: z.object({ id: z.string().max(100) }),
      response: { 204: z.null(), ...errorResponses },
    },
    handler: async (request, reply) => {
      await deps.delivery.deleteSink(actorOf(request), request.params.id);
      return reply.code(204).send(null);
    },
  });

  r.get('/api/v1/audit/sinks/:id/deliveries', {
    schema: {
      tags: ['audit'],
      summary: 'Deliveries to a sink, newest first (status=failed lists what was given up)',
      security,
      params: z.object({ id: z.string().max(100) }),
      querystring: deliveriesQuery,
      response: { 200: z.object({ deliveries: z.array(deliverySchema) }), ...errorResponses },
    },
    handler: async (request) => ({
      deliveries: (
        await deps.delivery.deliveries(tenantOf(request).tenantId, request.params.id, request.query)
      ).map(deliveryJson),
    }),
  });

  r.post('/api/v1/audit/sinks/:id/deliveries/retry', {
    schema: {
      tags: ['audit'],
      summary: 'Send failed deliveries to a sink again (all of them, or the ones named)',
      security,
      params: z.object({ id: z.string().max(100) }),
      body: z
        .strictObject({
          delivery_ids: z
            .array(z.string().max(30))
            .max(500)
            .optional()
            .describe('Deliveries to retry; all failed ones when left out.'),
        })
        .optional(),
      response: {
        200: z.object({ retried: z.number().describe('Failed deliveries put back in the queue') }),
        ...errorResponses,
      },
    },
    handler: async (request) => ({
      retried: await deps.delivery.retryFailed(
        tenantOf(request).tenantId,
        request.params.id,
        request.body?.delivery_ids,
      ),
    }),
  });

  const webhookSchema = z
    .object({ id: z.string(), url: z.string(), enabled: z.boolean() })
    .meta({ id: 'Webhook' });

  r.put('/api/v1/webhooks', {
    schema: {
      tags: ['webhooks'],
      summary:
        'Set the tenant webhook for connected_account.created/.updated/.status_updated/.deleted (the signing secret is shown once)',
      security,
      body: z.strictObject({ url: z.string(), secret: z.string().optional() }),
      response: { 200: z.object({ webhook: webhookSchema, secret: z.string() }), ...errorResponses },
    },
    handler: async (request) => {
      const hook = await deps.delivery.setWebhook(actorOf(request), request.body);
      return { webhook: { id: hook.id, url: hook.url, enabled: true }, secret: hook.secret };
    },
  });

  r.get('/api/v1/webhooks', {
    schema: {
      tags: ['webhooks'],
      summary: 'The tenant webhook',
      security,
      response: { 200: z.object({ webhook: webhookSchema }), ...errorResponses },
    },
    handler: async (request) => {
      const hook = await deps.delivery.getWebhook(tenantOf(request).tenantId);
      return { webhook: { id: hook.id, url: hook.url, enabled: hook.enabled } };
    },
  });

  r.delete('/api/v1/webhooks', {
    schema: {
      tags: ['webhooks'],
      summary: 'Remove the tenant webhook',
      security,
      response: { 204: z.null(), ...errorResponses },
    },
    handler: async (request, reply) => {
      await deps.delivery.deleteWebhook(actorOf(request));
      return reply.code(204).send(null);
    },
  });

  r.get('/api/v1/webhooks/deliveries', {
    schema: {
      tags: ['webhooks'],
      summary: 'Deliveries of webhook events, newest first',
      security,
      querystring: deliveriesQuery,
      response: { 200: z.object({ deliveries: z.array(deliverySchema) }), ...errorResponses },
    },
    handler: async (request) => {
      const { tenantId } = tenantOf(request);
      const hook = await deps.delivery.getWebhook(tenantId);
      return {
        deliveries: (await deps.delivery.deliveries(tenantId, hook.id, request.query)).map(deliveryJson),
      };
    },
  });

  r.post('/api/v1/identities/:identifier/offboard', {
    schema: {
      tags: ['connected accounts'],
      summary:
        'Offboard an identity: revoke its connected accounts (crypto-shredded) and MCP tokens, close its MCP sessions everywhere; optionally delete its Cloudflare tokens',
      security,
      params: z.object({ identifier: z.string().max(256) }),
      body: z.strictObject({ revoke_upstream: z.boolean().optional() }).optional(),
      response: {
        200: z.object({
          revoked_connected_accounts: z.array(
            z.object({
              id: z.string(),
              upstream: z.object({ revoked: z.boolean(), detail: z.string() }).optional(),
            }),
          ),
          revoked_mcp_tokens: z.number(),
        }),
        ...errorResponses,
      },
    },
    handler: async (request) => {
      const result = await deps.offboarding.offboard(actorOf(request), request.params.identifier, {
        revokeUpstream: request.body?.revoke_upstream === true,
      });
      return {
        revoked_connected_accounts: result.revokedConnectedAccounts.map((a) => ({ ...a })),
        revoked_mcp_tokens: result.revokedMcpTokens,
      };
    },
  });
}

import type { ApiKeyView, TenantView } from '@warden/vault';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Container } from '../container.ts';
import { keyStatus } from '../key-status.ts';
import { adminActor, adminAuth } from './auth.ts';
import { errorResponses, tenant } from './schemas.ts';

function tenantJson(t: TenantView) {
  return { id: t.id, name: t.name, created_at: t.createdAt.toISOString() };
}

const tenantParams = z.object({ id: z.string().max(100) });

function apiKeyJson(k: ApiKeyView) {
  return {
    id: k.id,
    created_at: k.createdAt.toISOString(),
    revoked_at: k.revokedAt?.toISOString() ?? null,
    last_used_at: k.lastUsedAt?.toISOString() ?? null,
  };
}

export async function adminRoutes(
  app: FastifyInstance,
  deps: Pick<Container, 'tenants' | 'config' | 'codeMode' | 'db' | 'keys' | 'keyRotation'>,
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const security = [{ adminToken: [] }];
  r.addHook('onRequest', adminAuth(deps.config.adminToken));

  r.post('/admin/v1/tenants', {
    schema: {
      tags: ['admin'],
      summary: 'Create a tenant and its first API key (shown once)',
      security,
      body: z.strictObject({ name: z.string().describe('Display name of the tenant.') }),
      response: {
        201: z.object({ tenant, api_key: z.string(), api_key_id: z.string() }),
        ...errorResponses,
      },
    },
    handler: async (request, reply) => {
      const { tenant: created, apiKey } = await deps.tenants.create(adminActor(request), request.body.name);
      return reply
        .code(201)
        .send({ tenant: tenantJson(created), api_key: apiKey.key, api_key_id: apiKey.id });
    },
  });

  r.get('/admin/v1/tenants', {
    schema: {
      tags: ['admin'],
      summary: 'List tenants',
      security,
      response: { 200: z.object({ tenants: z.array(tenant) }), ...errorResponses },
    },
    handler: async () => ({ tenants: (await deps.tenants.list()).map(tenantJson) }),
  });

  r.get('/admin/v1/tenants/:id', {
    schema: {
      tags: ['admin'],
      summary: 'Get a tenant',
      security,
      params: tenantParams,
      response: { 200: z.object({ tenant }), ...errorResponses },
    },
    handler: async (request) => ({ tenant: tenantJson(await deps.tenants.get(request.params.id)) }),
  });

  r.post('/admin/v1/tenants/:id/api_keys', {
    schema: {
      tags: ['admin'],
      summary: 'Issue another API key for a tenant (shown once)',
      security,
      params: tenantParams,
      response: { 201: z.object({ api_key: z.string(), api_key_id: z.string() }), ...errorResponses },
    },
    handler: async (request, reply) => {
      const key = await deps.tenants.issueApiKey({ tenantId: request.params.id, actor: adminActor(request) });
      return reply.code(201).send({ api_key: key.key, api_key_id: key.id });
    },
  });

  r.get('/admin/v1/tenants/:id/api_keys', {
    schema: {
      tags: ['admin'],
      summary: "A tenant's API keys, newest first (never the secret)",
      security,
      params: tenantParams,
      response: {
        200: z.object({
          api_keys: z.array(
            z.object({
              id: z.string(),
              created_at: z.string(),
              revoked_at: z.string().nullable(),
              last_used_at: z.string().nullable(),
            }),
          ),
        }),
        ...errorResponses,
      },
    },
    handler: async (request) => ({
      api_keys: (await deps.tenants.listApiKeys(request.params.id)).map(apiKeyJson),
    }),
  });

  r.delete('/admin/v1/tenants/:id/api_keys/:key_id', {
    schema: {
      tags: ['admin'],
      summary: 'Revoke a tenant API key (effective immediately)',
      security,
      params: z.object({ id: z.string().max(100), key_id: z.string().max(100) }),
      response: { 204: z.null().describe('Revoked'), ...errorResponses },
    },
    handler: async (request, reply) => {
      await deps.tenants.revokeApiKey(
        { tenantId: request.params.id, actor: adminActor(request) },
        request.params.key_id,
      );
      return reply.code(204).send(null);
    },
  });

  r.get('/admin/v1/spec', {
    schema: {
      tags: ['admin'],
      summary: 'The Cloudflare OpenAPI document in use and the sandboxes serving it',
      security,
      response: {
        200: z.object({
          loaded: z.boolean(),
          version: z.string().nullable(),
          source: z.string().nullable(),
          loaded_at: z.string().nullable(),
          operations: z.number(),
          sandboxes: z
            .object({ size: z.number(), alive: z.number(), ready: z.number() })
            .nullable()
            .describe('Sandbox child processes: configured, running, and running the current spec'),
        }),
        ...errorResponses,
      },
    },
    handler: async () => {
      const pool = deps.codeMode.pool();
      if (!pool) {
        return {
          loaded: false,
          version: null,
          source: null,
          loaded_at: null,
          operations: 0,
          sandboxes: null,
        };
      }
      const spec = deps.codeMode.specStore.current();
      const stats = pool.stats();
      return {
        loaded: true,
        version: spec.version,
        source: spec.source,
        loaded_at: spec.loadedAt.toISOString(),
        operations: spec.operations.length,
        sandboxes: { size: stats.size, alive: stats.alive, ready: stats.ready },
      };
    },
  });

  r.get('/admin/v1/keys', {
    schema: {
      tags: ['admin'],
      summary: 'Key rotation status: the current key-encryption key and how many data keys each key wraps',
      description: 'A key can be retired (`warden keys retire`) once it wraps no data key.',
      security,
      response: {
        200: z.object({
          provider: z.string(),
          current_key_id: z.string(),
          data_keys_by_key: z.record(z.string(), z.number()),
          legacy_format: z
            .number()
            .describe(
              'Sealed secrets still bound in the first format (before kinds); `keys rotate` re-seals them.',
            ),
        }),
        ...errorResponses,
      },
    },
    handler: async () => keyStatus(deps),
  });

  r.post('/admin/v1/spec/reload', {
    schema: {
      tags: ['admin'],
      summary:
        'Read the Cloudflare OpenAPI document again and hand a changed one to every sandbox (no restart)',
      security,
      response: { 200: z.object({ version: z.string(), changed: z.boolean() }), ...errorResponses },
    },
    handler: async () => deps.codeMode.reload(),
  });
}

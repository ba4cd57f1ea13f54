import type { TenantView } from '@warden/vault';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Container } from '../container.ts';
import { adminActor, adminAuth } from './auth.ts';
import { errorResponses, tenant } from './schemas.ts';

function tenantJson(t: TenantView) {
  return { id: t.id, name: t.name, created_at: t.createdAt.toISOString() };
}

const tenantParams = z.object({ id: z.string().max(100) });

export async function adminRoutes(
  app: FastifyInstance,
  deps: Pick<Container, 'tenants' | 'config' | 'codeMode'>,
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

import type { McpTokenService } from '@warden/vault';
import { parseExpiry, validateIdentifier } from '@warden/vault';
import { WardenError } from '@warden/core';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Container } from '../container.ts';
import { actorOf, tenantAuth, tenantOf } from './auth.ts';
import { errorResponses } from './schemas.ts';

const security = [{ tenantKey: [] }];

export async function mcpTokenRoutes(
  app: FastifyInstance,
  deps: Pick<Container, 'tenants' | 'db' | 'config'> & { mcpTokens: McpTokenService },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.addHook('preHandler', tenantAuth(deps.tenants));
  const mcpUrl = `${deps.config.publicUrl}/mcp`;

  r.post('/api/v1/mcp/tokens', {
    schema: {
      tags: ['mcp'],
      summary: 'Mint a per-user MCP session token (shown once) and a ready ~/.cursor/mcp.json fragment',
      security,
      body: z.strictObject({
        identifier: z.string(),
        connection_names: z.array(z.string()).min(1).optional(),
        expiry: z
          .union([z.string(), z.number()])
          .optional()
          .describe('60s to 30d, e.g. "3600s", "12h", "7d". Default 3600s.'),
      }),
      response: {
        201: z.object({
          token: z.string(),
          token_id: z.string(),
          url: z.string(),
          expires_at: z.string(),
          cursor_config: z.object({
            mcpServers: z.record(
              z.string(),
              z.object({ url: z.string(), headers: z.record(z.string(), z.string()) }),
            ),
          }),
        }),
        ...errorResponses,
      },
    },
    handler: async (request, reply) => {
      const caller = tenantOf(request);
      const identifier = validateIdentifier(request.body.identifier);
      const expirySeconds = parseExpiry(request.body.expiry ?? '3600s', 'expiry');
      const names = request.body.connection_names ?? null;
      if (names) {
        const known = await deps.db.kysely
          .selectFrom('connections')
          .select('name')
          .where('tenant_id', '=', caller.tenantId)
          .execute();
        const unknown = names.filter((n) => !known.some((k) => k.name === n));
        if (unknown.length > 0) {
          throw new WardenError(
            'invalid_request',
            `connection_names: unknown connection '${unknown[0]}'; this tenant has: ${known.map((k) => k.name).join(', ')}`,
            {
              field: 'connection_names',
            },
          );
        }
      }
      const { token, record } = await deps.mcpTokens.create({
        ctx: actorOf(request),
        identifier,
        connectionNames: names,
        expirySeconds,
        audience: mcpUrl,
        createdBy: caller.apiKeyId,
      });
      return reply.code(201).send({
        token,
        token_id: record.id,
        url: mcpUrl,
        expires_at: record.expiresAt.toISOString(),
        cursor_config: {
          mcpServers: { cloudflare: { url: mcpUrl, headers: { Authorization: `Bearer ${token}` } } },
        },
      });
    },
  });

  r.delete('/api/v1/mcp/tokens/:id', {
    schema: {
      tags: ['mcp'],
      summary: 'Revoke an MCP token at once, on every replica',
      security,
      params: z.object({ id: z.string().max(100) }),
      response: { 204: z.null(), ...errorResponses },
    },
    handler: async (request, reply) => {
      await deps.mcpTokens.revoke(actorOf(request), request.params.id);
      return reply.code(204).send(null);
    },
  });
}
